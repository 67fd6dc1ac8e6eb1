"""Downloads against a real HTTP server on 127.0.0.1: resume, checksums, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import make_devkit, write_jpeg

from bof.cli import main
from bof.data.coco import CocoDetection
from bof.data.download import Archive, DownloadError, download, fetch, safe_extract
from bof.data.voc import VOCDetection


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) with Range support; ``cut_after`` drops the connection
    after that many bytes of a full response; ``requests`` records (path, Range header)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server: Server = self.server
        name = self.path.lstrip("/")
        server.requests.append((name, self.headers.get("Range")))
        if name not in server.files:
            self.send_error(404, "Not Found")
            return
        data, start = server.files[name], 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if server.cut_after is not None and start == 0:
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection dies mid-transfer
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def tar_bytes(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        bundle.add(folder, arcname=arcname)
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def voc_tar(tmp_path) -> bytes:
    devkit = make_devkit(
        tmp_path / "src" / "VOCdevkit",
        {"000001": (40, 30, [("dog", False, False, (2, 3, 20, 25))]), "000002": (32, 32, [])},
        split="test",
    )
    return tar_bytes(devkit, "VOCdevkit")


def test_voc_archive_downloads_extracts_and_loads(server, voc_tar, tmp_path):
    server.files["VOCtest_06-Nov-2007.tar"] = voc_tar
    archive = Archive(
        "voc2007_test", "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar", md5(voc_tar)
    )
    root = tmp_path / "voc"
    marker = fetch(archive, root, mirror=server.url, progress=False)
    assert json.loads(marker.read_text())["md5"] == md5(voc_tar)
    dataset = VOCDetection(root / "VOCdevkit", [("2007", "test")])
    assert [s.image_id for s in dataset.samples] == ["000001", "000002"]
    assert not (root / ".bof" / "downloads").exists()  # the archive is removed after extraction
    count = len(server.requests)
    fetch(archive, root, mirror=server.url, progress=False)
    assert len(server.requests) == count  # already extracted: nothing fetched


def test_interrupted_download_resumes_with_a_range_request(server, voc_tar, tmp_path):
    server.files["a.tar"] = voc_tar
    server.cut_after = len(voc_tar) // 3
    destination = tmp_path / "a.tar"
    with pytest.raises(DownloadError, match=rf"{server.url}/a.tar: the connection closed after .* rerun to resume"):
        download(f"{server.url}/a.tar", destination, md5(voc_tar), progress=False)
    partial = tmp_path / "a.tar.part"
    assert not destination.exists() and 0 < partial.stat().st_size < len(voc_tar)
    server.cut_after = None
    download(f"{server.url}/a.tar", destination, md5(voc_tar), progress=False)
    assert destination.read_bytes() == voc_tar and not partial.exists()
    assert server.requests[-1] == ("a.tar", f"bytes={len(voc_tar) // 3}-")


def test_checksum_mismatch_is_refused_and_nothing_is_kept(server, voc_tar, tmp_path):
    corrupt = bytearray(voc_tar)
    corrupt[600] ^= 0xFF
    server.files["VOCtest_06-Nov-2007.tar"] = bytes(corrupt)
    archive = Archive("voc2007_test", "http://example.org/VOCtest_06-Nov-2007.tar", md5(voc_tar))
    with pytest.raises(
        DownloadError, match=r"VOCtest_06-Nov-2007.tar: checksum mismatch \(expected MD5 " + md5(voc_tar)
    ):
        fetch(archive, tmp_path / "voc", mirror=server.url, progress=False)
    assert not (tmp_path / "voc" / "VOCdevkit").exists()
    assert not list((tmp_path / "voc" / ".bof" / "downloads").iterdir())


def test_missing_file_names_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match=rf"{server.url}/nope.tar: download failed \(HTTP 404"):
        download(f"{server.url}/nope.tar", tmp_path / "nope.tar", "0" * 32, progress=False)


def malicious_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        good = tarfile.TarInfo("VOCdevkit/ok.txt")
        good.size = 2
        bundle.addfile(good, io.BytesIO(b"ok"))
        if kind == "traversal":
            evil = tarfile.TarInfo("VOCdevkit/../../evil.txt")
            evil.size = 4
            bundle.addfile(evil, io.BytesIO(b"evil"))
        elif kind == "absolute":
            evil = tarfile.TarInfo("/tmp/bof-evil.txt")
            evil.size = 4
            bundle.addfile(evil, io.BytesIO(b"evil"))
        elif kind == "symlink":
            link = tarfile.TarInfo("VOCdevkit/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            bundle.addfile(link)
        elif kind == "device":
            device = tarfile.TarInfo("VOCdevkit/dev")
            device.type = tarfile.CHRTYPE
            bundle.addfile(device)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("traversal", "outside"),
        ("absolute", "outside"),
        ("symlink", "links are not extracted"),
        ("device", "not a regular file"),
    ],
)
def test_malicious_tar_members_are_refused_before_anything_is_written(tmp_path, kind, message):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(malicious_tar(kind))
    target = tmp_path / "inside" / "target"
    with pytest.raises(DownloadError, match=message):
        safe_extract(archive, target)
    assert (
        not (target / "VOCdevkit").exists()
        and not (tmp_path / "evil.txt").exists()
        and not (tmp_path / "inside" / "evil.txt").exists()
    )


def test_malicious_zip_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("annotations/ok.json", "{}")
        bundle.writestr("../escape.txt", "evil")
    with pytest.raises(DownloadError, match=r"refusing member '../escape.txt'"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "target" / "annotations").exists()


def test_coco_zip_in_the_real_layout_through_the_cli(server, tmp_path, capsys):
    source = tmp_path / "coco_src"
    write_jpeg(source / "val2017" / "000000000001.jpg", 40, 30)
    annotations = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [2, 3, 10, 12], "area": 120, "iscrowd": 0}],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.write(source / "val2017" / "000000000001.jpg", "val2017/000000000001.jpg")
        bundle.writestr("annotations/instances_val2017.json", json.dumps(annotations))
    server.files["val2017.zip"] = buffer.getvalue()
    root = tmp_path / "coco"
    args = ["download", "--archive", "coco2017_val", "--root", str(root), "--mirror", server.url, "--quiet"]
    assert main(args) == 2  # the official checksum does not match this small archive
    assert "checksum mismatch" in capsys.readouterr().err
    assert main([*args, "--expect-md5", f"coco2017_val={md5(buffer.getvalue())}"]) == 0
    dataset = CocoDetection(root / "val2017", root / "annotations" / "instances_val2017.json")
    assert dataset.classes == ["dog"] and dataset.samples[0].boxes_xyxy.tolist() == [[2.0, 3.0, 12.0, 15.0]]
