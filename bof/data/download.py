"""Downloading and unpacking the real datasets: VOC2007 trainval/test, VOC2012 trainval, COCO 2017.

* Checksums: every archive's MD5 is checked before it is used; a mismatch deletes the
  partial file and names the URL.
* Resume: bytes arrive in ``<archive>.part``; an interrupted download continues from
  there with an HTTP Range request (or starts over if the server ignores it). Only a
  complete file with the right checksum is renamed to its final name, so a partial
  file never passes as complete.
* Safe extraction: every member is checked before anything is written: no absolute
  path, no ``..``, nothing outside the target, no symbolic or hard links, no device
  files. A ``.done`` marker records what was extracted.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from bof.errors import BofError
from bof.io import atomic_write_json


class DownloadError(BofError):
    """A download or extraction failed; the message names the URL or archive."""


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    md5: str


ARCHIVES = {
    archive.name: archive
    for archive in (
        Archive(
            "voc2007_trainval",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
            "c52e279531787c972589f7e41ab4ae64",
        ),
        Archive(
            "voc2007_test",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
            "b6e924de25625d8de591ea690078ad9f",
        ),
        Archive(
            "voc2012_trainval",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "6cd6e144f989b92b3379bac3b3de84fd",
        ),
        Archive(
            "coco2017_train", "http://images.cocodataset.org/zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"
        ),
        Archive("coco2017_val", "http://images.cocodataset.org/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
        Archive(
            "coco2017_annotations",
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            "f4bbac642086de4f52a3fdda2de5fa2c",
        ),
    )
}
CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, destination: str | Path, md5: str, *, timeout: float = 60, progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination`` (resuming ``destination.part``) and check its MD5."""
    destination = Path(destination)
    if destination.exists() and md5sum(destination) == md5:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            if have and not resumed:
                have = 0  # the server sent the whole file: start over
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with (
                open(partial, "ab" if resumed else "wb") as stream,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=destination.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    stream.write(block)
                    bar.update(len(block))
        received = partial.stat().st_size
        if total is not None and received < total:
            raise DownloadError(
                f"{url}: the connection closed after {received} of {total} bytes; rerun to resume from {partial}"
            )
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to fetch: the partial file is complete
            pass
        else:
            raise DownloadError(
                f"{url}: download failed (HTTP {error.code} {error.reason}); {partial} keeps what arrived"
            ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: download failed ({reason}); rerun to resume from {partial}") from None
    found = md5sum(partial)
    if found != md5:
        partial.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch (expected MD5 {md5}, got {found}); the corrupt download was deleted"
        )
    os.replace(partial, destination)
    return destination


def _check_member(name: str, target: Path, archive: Path) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts:
        raise DownloadError(f"{archive}: refusing member {name!r}: it would be written outside {target}")
    resolved = (target / path).resolve()
    if resolved != target.resolve() and target.resolve() not in resolved.parents:
        raise DownloadError(f"{archive}: refusing member {name!r}: it would be written outside {target}")


def safe_extract(archive: str | Path, target: str | Path) -> list[str]:
    """Extract a .tar/.tar.gz/.zip into ``target`` after checking every member; returns the names."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _check_member(member.filename, target, archive)
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise DownloadError(f"{archive}: refusing member {member.filename!r}: links are not extracted")
            for member in members:
                bundle.extract(member, target)
            return [member.filename for member in members]
    try:
        bundle = tarfile.open(archive)  # noqa: SIM115 (closed by the with below)
    except tarfile.TarError as error:
        raise DownloadError(f"{archive}: not a readable tar or zip archive ({error})") from None
    with bundle:
        members = bundle.getmembers()
        for member in members:
            _check_member(member.name, target, archive)
            if member.issym() or member.islnk():
                raise DownloadError(f"{archive}: refusing member {member.name!r}: links are not extracted")
            if not (member.isfile() or member.isdir()):
                raise DownloadError(f"{archive}: refusing member {member.name!r}: not a regular file or folder")
        bundle.extractall(target, members=members, filter="data")
        return [member.name for member in members]


def fetch(
    archive: Archive, root: str | Path, *, mirror: str | None = None, keep_archive: bool = False, progress: bool = True
) -> Path:
    """Download (or resume), verify and extract one archive into ``root``; idempotent."""
    root = Path(root)
    marker = root / ".bof" / f"{archive.name}.done"
    if marker.exists():
        return marker
    url = f"{mirror.rstrip('/')}/{archive.url.rsplit('/', 1)[1]}" if mirror else archive.url
    downloads = root / ".bof" / "downloads"
    path = download(url, downloads / url.rsplit("/", 1)[1], archive.md5, progress=progress)
    names = safe_extract(path, root)
    atomic_write_json(marker, {"archive": archive.name, "url": url, "md5": archive.md5, "members": len(names)})
    if not keep_archive:
        path.unlink()
        if not any(downloads.iterdir()):
            downloads.rmdir()
    return marker
