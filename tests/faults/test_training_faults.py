"""Training faults: SIGKILL mid-epoch then restart (same final weights and metrics as an
uninterrupted run), and a loss that becomes NaN/inf (stops naming iteration and term)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import torch

from bof.engine.checkpoint import load_checkpoint
from bof.engine.loop import NonFiniteLossError
from bof.engine.train import train

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(config_path, out, *extra):
    command = [sys.executable, "-m", "bof", "train", "--config", str(config_path), "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def logged_iterations(out):
    log = out / "train_log.jsonl"
    return [json.loads(line)["iteration"] for line in log.read_text().splitlines()] if log.exists() else []


def test_sigkill_mid_epoch_then_restart_equals_an_uninterrupted_run(tiny_config, tmp_path):
    path, _ = tiny_config("yolov3", ("optim.epochs=4",))
    extra = ("--set", "optim.epochs=4", "--set", "run.log_every=1")
    reference = tmp_path / "reference"
    assert start(path, reference, *extra).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    process = start(path, killed, *extra)
    deadline = time.time() + 300
    while not any(
        i % 3 != 0 and i > 3 for i in logged_iterations(killed)
    ):  # 3 iterations an epoch: wait until inside epoch 2+
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_checkpoint(killed / "checkpoint.pt")["progress"]
    assert saved["iteration"] < max(logged_iterations(killed))  # work after the last checkpoint was lost...
    resumed = start(path, killed, *extra)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resuming {killed} at epoch {saved['epoch'] + 1}" in output  # ...and redone from it
    expected, got = load_checkpoint(reference / "model.pt")["model"], load_checkpoint(killed / "model.pt")["model"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert json.loads((killed / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    assert json.loads((killed / "val_curve.json").read_text()) == json.loads((reference / "val_curve.json").read_text())


def test_infinite_loss_names_iteration_and_term(tiny_config, tmp_path, monkeypatch):
    _, config = tiny_config("faster_rcnn", ("optim.epochs=2",))
    weighted = importlib.import_module("bof.models.weighted")

    original, calls = weighted.WeightedRoIHeads.box_loss, []

    def exploding(self, *args):
        losses = original(self, *args)
        calls.append(1)
        if len(calls) == 2:
            losses["loss_classifier"] = losses["loss_classifier"] + float("inf")
        return losses

    monkeypatch.setattr(weighted.WeightedRoIHeads, "box_loss", exploding)
    try:
        train(config, tmp_path / "run", progress=False)
    except NonFiniteLossError as error:
        assert "iteration 1 (epoch 1): loss term 'loss_classifier' is inf" in str(error)
        assert "last good checkpoint: none yet" in str(error)
    else:
        raise AssertionError("an infinite loss did not stop training")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_diverged_weights_are_reported_at_validation(tiny_synth):
    """A model whose weights went non-finite without a NaN loss (possible at too high a
    learning rate) is caught when its detections are evaluated."""
    import pytest

    from bof.data.voc import VOCDetection
    from bof.engine.distributed import Context
    from bof.engine.predict import predict
    from bof.errors import BofError

    class Diverged(torch.nn.Module):
        def forward(self, images):
            return [
                {
                    "boxes": torch.full((1, 4), float("nan")),
                    "scores": torch.ones(1),
                    "labels": torch.zeros(1, dtype=torch.long),
                }
                for _ in images
            ]

    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "test")])
    with pytest.raises(BofError, match="detections are not finite .*diverged"):
        predict(Diverged(), dataset, Context(0, 1, 0, torch.device("cpu")))
