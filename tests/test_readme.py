"""README's single-run examples, run as written (at smoke sizes) where `make run` leaves the
data: the paths, flags and files each command hands to the next must work."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what makes the examples quick here; every other flag and path is README's own
SMALL = {
    "pretrain": ["epochs=1", "image_size=32", "batch_size=4", "warmup_epochs=0", "workers=0"],
    "train": ["optim.epochs=1", "optim.batch_size=4", "optim.warmup_epochs=0", "run.workers=0", "run.val_every=0"],
}

pytestmark = pytest.mark.slow


def example_commands() -> list[str]:
    """The indented `.venv/bin/bof` lines of the block after "CPU-sized single runs"."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("CPU-sized single runs in `config/examples/`:") :].split("\n\n")[1]
    return [line.strip() for line in block.splitlines() if line.strip().startswith(".venv/bin/bof ")]


def test_the_examples_block_is_found():
    commands = example_commands()
    assert len(commands) >= 7 and any(" anchors " in c for c in commands)
    assert all("data/synth" not in c for c in commands)  # `make run` writes data/mini


def test_readme_single_run_examples_work_as_written(tiny_synth, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mini").symlink_to(tiny_synth)  # where `make run` puts the mini data
    (tmp_path / "config").symlink_to(ROOT / "config")
    for command in example_commands():
        words = shlex.split(command)
        words[:1] = [sys.executable, "-m", "bof"]
        for override in SMALL.get(words[3], []):
            words += ["--set", override]
        result = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert (tmp_path / "runs" / "frcnn" / "voc07.json").exists()
    assert (tmp_path / "runs" / "yolov3" / "model.pt").exists()
