"""examples/train_torchvision.py, docs/library.md's example, runs as a user runs it: a stock torchvision
Faster R-CNN and RetinaNet, every freebie on, a few iterations on a `bof synth` set; the images are
mixed (weights below 1 reach the losses) and every loss is finite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet"])
def test_the_example_trains_a_torchvision_detector_with_every_freebie(detector, tmp_path):
    command = [sys.executable, "examples/train_torchvision.py", "--detector", detector, "--iterations", "3"]
    command += ["--data", str(tmp_path / "synth"), "--workers", "2", "--size", "128"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["detector"] == detector and summary["iterations"] == 3
    assert summary["mixed_images"] == 3 * 4  # Beta(1.5, 1.5) mixes every image of the first epoch
    assert summary["losses"] and all(math.isfinite(value) for value in summary["losses"].values())
    assert "iteration 2: lr" in result.stdout
