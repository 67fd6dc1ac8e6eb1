"""Damaged checkpoints never become results, and a run folder has one writer.

A checkpoint whose bytes changed after it was written (bits flipped inside a tensor, a cut copy)
loads without complaint through ``torch.load``: the zip archive's CRC-32s are what catch it. A
training then falls back to the generation before (``checkpoint.prev.pt``) and says so, or stops
in one line when none is intact; ``--restart`` sets them aside without reading them."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest
import torch

from bof.engine.checkpoint import DamagedCheckpoint, RunCheckpoints, load_checkpoint
from bof.engine.lock import hold_run_folder
from bof.engine.train import train
from bof.errors import BofError

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def bof_train(config_path, out, *extra):
    command = [sys.executable, "-m", "bof", "train", "--config", str(config_path), "--out", str(out), "--quiet"]
    return subprocess.run([*command, *extra], env=ENV, capture_output=True, text=True, timeout=600)


def flip_inside_a_tensor(path, count: int = 16) -> str:
    """Invert ``count`` bytes in the middle of the largest tensor record; returns the record's name."""
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as stream:
        stream.seek(record.header_offset + 26)  # local header: name and extra-field lengths
        name_length, extra_length = struct.unpack("<HH", stream.read(4))
        start = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
        stream.seek(start)
        data = stream.read(count)
        stream.seek(start)
        stream.write(bytes(byte ^ 0xFF for byte in data))
    return record.filename


def same_weights(path_a, path_b) -> bool:
    a, b = load_checkpoint(path_a)["model"], load_checkpoint(path_b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def files_of(folder, *names):
    return {name: (folder / name).read_text() for name in names}


def finished_run(tiny_config, folder):
    """A finished two-epoch run: checkpoint.pt after epoch 2, checkpoint.prev.pt after epoch 1."""
    path, _ = tiny_config("yolov3")
    result = bof_train(path, folder)
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(folder / "checkpoint.pt")["progress"]["epoch"] == 2
    assert load_checkpoint(folder / "checkpoint.prev.pt")["progress"]["epoch"] == 1
    return path


RESULTS = ("metrics.json", "val_curve.json", "train_log.jsonl")


def test_a_flipped_tensor_is_refused_naming_its_record(tmp_path):
    path = tmp_path / "checkpoint.pt"
    weights = torch.randn(256, 256)
    torch.save({"weights": weights}, path)
    record = flip_inside_a_tensor(path)
    assert not torch.equal(torch.load(path, weights_only=True)["weights"], weights)  # torch.load alone: no word
    with pytest.raises(DamagedCheckpoint) as refused:
        load_checkpoint(path)
    assert (
        str(refused.value)
        == f"{path}: damaged checkpoint (record {record!r} does not match the CRC-32 written with it)"
    )


def test_a_damaged_latest_checkpoint_resumes_from_the_generation_before(tiny_config, tmp_path):
    reference = tmp_path / "reference"
    config_path = finished_run(tiny_config, reference)
    damaged = tmp_path / "damaged"
    shutil.copytree(reference, damaged)
    record = flip_inside_a_tensor(damaged / "checkpoint.pt")

    result = bof_train(config_path, damaged)

    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()
    assert said[0].startswith(
        f"{damaged}/checkpoint.pt: damaged checkpoint (record {record!r} does not match the CRC-32 written with it);"
        " kept as checkpoint.damaged-"
    )
    assert said[0].endswith("; resuming from checkpoint.prev.pt, the generation before")
    assert said[1] == f"resuming {damaged} at epoch 2 (iteration 3)"
    assert len(list(damaged.glob("checkpoint.damaged-*.pt"))) == 1
    # epoch 2 was trained again from epoch 1's checkpoint: the weights, metrics, curve and log
    # (each iteration once) are those of the uninterrupted run
    assert same_weights(reference / "model.pt", damaged / "model.pt")
    assert files_of(damaged, *RESULTS) == files_of(reference, *RESULTS)


def test_with_no_intact_checkpoint_train_stops_and_restart_starts_over(tiny_config, tmp_path):
    reference = tmp_path / "reference"
    config_path = finished_run(tiny_config, reference)
    damaged = tmp_path / "damaged"
    shutil.copytree(reference, damaged)
    latest = damaged / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a cut copy
    flip_inside_a_tensor(damaged / "checkpoint.prev.pt")
    model_before = (damaged / "model.pt").read_bytes()

    result = bof_train(config_path, damaged)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"bof train: error: {latest}: damaged checkpoint (its zip archive is cut or broken: "
        + result.stderr.split("cut or broken: ", 1)[1].split(")", 1)[0]
        + f"); {damaged}/checkpoint.prev.pt: damaged checkpoint (record "
        + result.stderr.split("(record ", 1)[1].split(" does not", 1)[0]
        + " does not match the CRC-32 written with it): no intact checkpoint is left; `--restart`"
        " (the pipeline: `--config retrain=true`) sets them aside and trains from scratch"
    ]
    assert (damaged / "model.pt").read_bytes() == model_before  # the good result is not overwritten

    restarted = bof_train(config_path, damaged, "--restart")  # never reads the damaged files

    assert restarted.returncode == 0, restarted.stderr
    assert f"starting {damaged} over (--restart); the old checkpoints are kept as checkpoint.stale-" in restarted.stdout
    assert len(list(damaged.glob("checkpoint.stale-*.pt"))) == 1
    assert len(list(damaged.glob("checkpoint.prev.stale-*.pt"))) == 1
    assert same_weights(reference / "model.pt", damaged / "model.pt")
    assert files_of(damaged, *RESULTS) == files_of(reference, *RESULTS)


def test_a_failed_checkpoint_save_leaves_the_curve_and_log_at_the_checkpoint(tiny_config, tmp_path, monkeypatch):
    """The disk fills while epoch 2's checkpoint is written: val_curve.json must not already hold
    epoch 2's point; the resumed run's curve and log equal an uninterrupted run's."""
    _, config = tiny_config("yolov3")
    train(config, tmp_path / "reference", progress=False)
    out = tmp_path / "run"
    original = RunCheckpoints.save

    def full_disk_at_epoch_2(self, state):
        if state["progress"]["epoch"] == 2:
            raise BofError(f"{self.latest}: could not write (No space left on device)")
        original(self, state)

    monkeypatch.setattr(RunCheckpoints, "save", full_disk_at_epoch_2)
    with pytest.raises(BofError, match="No space left on device"):
        train(config, out, progress=False)
    assert [point["epoch"] for point in json.loads((out / "val_curve.json").read_text())] == [1]
    monkeypatch.setattr(RunCheckpoints, "save", original)
    train(config, out, progress=False)
    assert files_of(out, *RESULTS) == files_of(tmp_path / "reference", *RESULTS)


def test_a_second_writer_of_a_run_folder_is_refused(tiny_config, tmp_path):
    config_path, _ = tiny_config("yolov3")
    out = tmp_path / "run"
    with hold_run_folder(out, "bof train"):  # a first `bof train` writing the folder
        second = bof_train(config_path, out)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"bof train: error: {out}: bof train (pid {os.getpid()}, since "
        + second.stderr.split("since ", 1)[1].split(")", 1)[0]
        + ") is writing this run folder; wait for it to end or stop it (two writers would mix their files)"
    ]
    assert sorted(path.name for path in out.iterdir()) == [".lock"]  # it wrote nothing
    assert bof_train(config_path, out).returncode == 0  # the lock went with its holder


def test_pretrain_restart_sets_an_unreadable_checkpoint_aside_unread(tiny_synth, tmp_path):
    """The pipeline's `--config retrain=true` passes --restart to pretrainings too."""
    from bof.engine.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(
        data=str(tiny_synth / "classification"),
        width=0.125,
        depth=0.34,
        image_size=32,
        epochs=1,
        batch_size=4,
        warmup_epochs=0,
        workers=0,
    )
    out = tmp_path / "backbone"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(100))  # a zip's start, then nothing
    with pytest.raises(
        BofError, match=r"checkpoint.pt: damaged checkpoint .*no intact checkpoint is left; `--restart`"
    ):
        pretrain(config, out, progress=False)
    pretrain(config, out, progress=False, restart=True)
    assert len(list(out.glob("checkpoint.stale-*.pt"))) == 1
    assert load_checkpoint(out / "checkpoint.pt")["progress"]["epoch"] == 1
    assert (out / "backbone.pt").exists()


def test_under_torchrun_every_process_falls_back_together_and_the_lock_answers_all(tiny_config, tmp_path):
    """Two gloo processes: a damaged latest checkpoint is set aside once (by the main process) and
    both resume from the generation before, ending with the uninterrupted run's weights; a held
    run folder stops both processes with the lock's message, not a hang."""
    config_path, _ = tiny_config("yolov3")

    def torchrun(out):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        command += ["-m", "bof", "train", "--config", str(config_path), "--out", str(out), "--quiet"]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**ENV, "OMP_NUM_THREADS": "1"})

    reference = tmp_path / "reference"
    assert torchrun(reference).returncode == 0
    damaged = tmp_path / "damaged"
    shutil.copytree(reference, damaged)
    record = flip_inside_a_tensor(damaged / "checkpoint.pt")

    result = torchrun(damaged)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(f"record {record!r} does not match the CRC-32 written with it") == 1
    assert result.stdout.count(f"resuming {damaged} at epoch 2") == 1
    assert len(list(damaged.glob("checkpoint.damaged-*.pt"))) == 1
    assert same_weights(reference / "model.pt", damaged / "model.pt")

    with hold_run_folder(damaged, "bof train"):
        held = torchrun(damaged)
    assert held.returncode != 0
    assert f"bof train: error: {damaged}: bof train (pid {os.getpid()}, since " in held.stderr
