"""Two CPU processes under torchrun (gloo), with synchronized BN: the DDP path runs for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bof.engine.checkpoint import load_checkpoint


def test_torchrun_two_processes_with_sync_bn(tiny_config, tmp_path):
    path, _ = tiny_config("yolov3")
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "bof", "train", "--config", str(path), "--out", str(out), "--quiet",
        "--set", "tricks.batchnorm.mode=sync", "--set", "optim.epochs=2",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["iterations"] == 2 * (12 // 4)
    model = load_checkpoint(out / "model.pt")["model"]
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
    assert len(json.loads((out / "val_curve.json").read_text())) == 2
