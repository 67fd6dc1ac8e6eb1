"""Kills while a checkpoint or a metrics file is being written, and a disk that fills up:
the previous file stays valid, no reader sees a half-written file, nothing corrupt is left."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bof.engine.checkpoint import load_checkpoint, save_checkpoint
from bof.errors import BofError
from bof.io import atomic_write_json, atomic_write_text

WRITER = textwrap.dedent(
    """
    import json, sys, torch
    from bof.engine.checkpoint import save_checkpoint
    from bof.io import atomic_write_json
    import os, signal
    kind, path = sys.argv[1], sys.argv[2]
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    real_fdopen = os.fdopen

    def fdopen_then_die(fd, mode, *args, **kwargs):
        # from generation `kill_at` on, the first write to the temporary file gets half its
        # bytes to disk and then the process is SIGKILLed: a kill in the middle of a write
        stream = real_fdopen(fd, mode, *args, **kwargs)
        if kill_at and generation >= kill_at:
            real_write = stream.write
            def write(data):
                real_write(bytes(data)[: len(data) // 2])
                stream.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            stream.write = write
        return stream

    os.fdopen = fdopen_then_die
    for generation in range(1, 10**6):
        if kind == "checkpoint":
            save_checkpoint({"generation": generation, "weights": torch.full((4_000_000,), float(generation))}, path)
        else:
            atomic_write_json(path, {"generation": generation, "values": [generation] * 400_000})
        print(generation, flush=True)
    """
)


def check(kind: str, path: Path) -> int:
    if kind == "checkpoint":
        state = load_checkpoint(path)
        assert torch.all(state["weights"] == state["generation"])  # never a mix of two writes
        return state["generation"]
    data = json.loads(path.read_text())
    assert set(data["values"]) == {data["generation"]}
    return data["generation"]


@pytest.mark.parametrize("kind", ["checkpoint", "metrics"])
def test_sigkill_during_writes_leaves_the_previous_file_valid(tmp_path, kind):
    path = tmp_path / ("checkpoint.pt" if kind == "checkpoint" else "metrics.json")
    seen = []
    for delay in (0.3, 0.55, 0.8, 1.15, 1.6):
        process = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(path)], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # at least one complete write, then kill somewhere in a later one
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen.append(check(kind, path))
    assert max(seen) > 1  # the kills landed while later generations were being written
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(
        name.startswith(f".{path.name}.") and name.endswith(".tmp") for name in leftovers
    )  # only hidden temporaries


@pytest.mark.parametrize("kind", ["checkpoint", "metrics"])
def test_a_kill_in_the_middle_of_a_write_leaves_the_previous_file(tmp_path, kind):
    """Deterministic: the writer dies with half of generation 3's bytes in its temporary file."""
    path = tmp_path / ("checkpoint.pt" if kind == "checkpoint" else "metrics.json")
    process = subprocess.run([sys.executable, "-c", WRITER, kind, str(path), "3"], capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL and process.stdout.split() == ["1", "2"]
    assert check(kind, path) == 2
    (temporary,) = [p for p in tmp_path.iterdir() if p != path]  # the write that was cut short
    assert temporary.name.startswith(f".{path.name}.") and temporary.name.endswith(".tmp")
    assert 0 < temporary.stat().st_size < path.stat().st_size  # half written: the kill landed mid-write
    with pytest.raises((BofError, ValueError)):
        check(kind, temporary)


@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["umask022", "umask077", "umask002"]
)
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """As ``open(path, "w")``: 0o666 less the umask, for a new file and for a replaced one (mkstemp's 0600 would
    leave metrics, checkpoints and tables unreadable to lab-mates on a shared cluster)."""
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "REPORT.md", "new")
        (tmp_path / "metrics.json").write_text("{}")
        (tmp_path / "metrics.json").chmod(0o600)
        atomic_write_json(tmp_path / "metrics.json", {"mAP": 0.5})
        save_checkpoint({"generation": 1}, tmp_path / "model.pt")
        with open(tmp_path / "reference.txt", "w"):
            pass
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"REPORT.md": mode, "metrics.json": mode, "model.pt": mode, "reference.txt": mode}


def test_without_proc_the_umask_is_read_and_put_back(tmp_path, monkeypatch):
    """Where /proc/self/status cannot be read (macOS, a locked-down container) the umask is read by setting it."""
    read_text = Path.read_text

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "table3.md", "x")
        assert os.umask(0o027) == 0o027  # put back as it was
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "table3.md").stat().st_mode) == 0o640


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: writes beyond it fail with ENOSPC for real."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_reported_and_the_old_file_kept(full_disk):
    metrics = full_disk / "metrics.json"
    atomic_write_json(metrics, {"mAP": 0.5})
    with pytest.raises(BofError, match=r"metrics.json: could not write \(No space left on device\)"):
        atomic_write_json(metrics, {"values": list(range(200_000))})
    assert json.loads(metrics.read_text()) == {"mAP": 0.5}
    checkpoint = full_disk / "checkpoint.pt"
    save_checkpoint({"generation": 1}, checkpoint)
    with pytest.raises(BofError, match="No space left on device"):
        save_checkpoint({"weights": torch.zeros(1_000_000)}, checkpoint)
    assert load_checkpoint(checkpoint) == {"generation": 1}
    assert sorted(p.name for p in full_disk.iterdir()) == ["checkpoint.pt", "metrics.json"]  # no temporaries left


def test_the_cli_says_the_disk_is_full(full_disk, tiny_synth):
    filler = full_disk / "filler"
    with pytest.raises(OSError), open(filler, "wb") as stream:
        stream.write(os.urandom(300_000))
    out = full_disk / "check.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bof",
            "data",
            "to-coco",
            "--voc",
            str(tiny_synth / "VOCdevkit"),
            "--sets",
            "2007:trainval",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
