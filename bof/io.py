"""Writing files so that a reader never sees a half-written one: temporary file, fsync, rename."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from bof.errors import BofError


def atomic_write(
    path: str | Path, write: Callable[[BinaryIO], object], *, keep_previous: str | Path | None = None
) -> None:
    """Replace ``path`` with what ``write(stream)`` writes, atomically: a temporary file in the
    same folder, fsync, rename. The file gets the mode ``open(path, "w")`` would give a new file
    (0644 under umask 022), not mkstemp's 0600. On any failure (a full disk included) the old
    file is untouched and the temporary file is removed. With ``keep_previous``, the old file
    is also kept under that name once the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.chmod(temporary, 0o666 & ~_umask())
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        if keep_previous is not None and path.exists():
            # a second name for the old file first, so that ``path`` exists at every moment
            link = Path(temporary).with_suffix(".prev")
            os.link(path, link)
            os.replace(link, keep_previous)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = _os_error(error)
        if cause is not None:  # a full disk, a read-only folder...: say so, not where it surfaced
            raise BofError(f"{path}: could not write ({cause.strerror or cause})") from error
        raise


def _umask() -> int:
    """The process's umask. Linux shows it in /proc/self/status; elsewhere it can only be read by
    setting it, so it is set back at once (another thread creating a file in between would get 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind ``error``, also when a library re-raised it as something else
    (torch.save turns a full disk into a RuntimeError of its zip writer)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: object, *, indent: int | None = 2) -> None:
    """Standard JSON only: a NaN or infinity is an error here, not a ``NaN`` token that other
    readers refuse (and :func:`read_json` too)."""
    try:
        text = json.dumps(data, indent=indent, allow_nan=False)
    except ValueError as error:
        raise BofError(f"{path}: not written, it would hold a non-finite number ({error})") from None
    atomic_write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file the pipeline wrote, parsed; a cut or damaged one is an error that names it
    (``json`` alone names no file), and NaN/Infinity, which no bof writer emits, are refused.
    A missing file stays a ``FileNotFoundError``: callers decide whether that is a gap or a fault."""
    path = Path(path)

    def refuse(literal: str):
        raise ValueError(f"{literal} is not a number JSON allows")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except json.JSONDecodeError as error:
        problem = f"{error.msg} at line {error.lineno}, column {error.colno}"
    except (UnicodeDecodeError, ValueError) as error:
        problem = str(error)
    raise BofError(f"{path}: not valid JSON ({problem}); it changed after it was written: rerun the job that writes it")


CHECKSUMS = "SHA256SUMS"


def sha256(path: str | Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def write_checksums(folder: str | Path, paths: list[Path]) -> Path:
    """``<folder>/SHA256SUMS`` of ``paths`` (relative to ``folder``), in ``sha256sum``'s format:
    ``cd <folder> && sha256sum -c SHA256SUMS`` checks them too."""
    folder = Path(folder)
    lines = [f"{sha256(path)}  {Path(path).relative_to(folder).as_posix()}\n" for path in sorted(map(Path, paths))]
    atomic_write_text(folder / CHECKSUMS, "".join(lines))
    return folder / CHECKSUMS


def verify_checksums(checksums: str | Path, paths: list[Path]) -> None:
    """Refuse any of ``paths`` that ``checksums`` (a ``SHA256SUMS``) does not list or whose bytes
    differ from those written: a results file cut, edited or deleted after its job ended."""
    checksums = Path(checksums)
    recorded = {}
    try:
        for number, line in enumerate(checksums.read_text(encoding="utf-8").splitlines(), 1):
            digest, separator, name = line.partition("  ")
            if not separator or len(digest) != 64:
                raise BofError(f"{checksums}: line {number}: expected '<sha256>  <file>', got {line!r}")
            recorded[name] = digest
    except FileNotFoundError:
        raise BofError(f"{checksums}: missing (it lists the checksums of the files beside it)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BofError(f"{checksums}: cannot be read as a SHA256SUMS file ({error})") from None
    for path in map(Path, paths):
        try:  # abspath, not resolve: a file may be a link into DVC's cache
            name = Path(os.path.abspath(path)).relative_to(os.path.abspath(checksums.parent)).as_posix()
        except ValueError:
            raise BofError(f"{path}: not in the folder of {checksums}, so it cannot be verified") from None
        if not path.exists():
            raise BofError(f"{path}: missing; rerun the job that writes it")
        if name not in recorded:
            raise BofError(f"{path}: not listed in {checksums}, so it cannot be verified")
        if sha256(path) != recorded[name]:
            raise BofError(
                f"{path}: its SHA-256 differs from the one written with it in {checksums} (the file changed"
                " after it was written); rerun the job that wrote it"
            )


def finite_float(value: object) -> float | None:
    """A JSON or YAML number as a finite float; None for anything else, NaN and the infinities
    included (every range check lets NaN through: comparisons with it are false), and for
    numbers beyond a float's range (``1e999`` reads as inf, a 400-digit integer overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
