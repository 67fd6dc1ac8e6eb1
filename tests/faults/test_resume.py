"""Resume exactness beyond the SIGKILL tests: every random stream a run draws from survives an
interruption at an epoch boundary, so the resumed run ends with the uninterrupted run's weights.

* Faster R-CNN: its RPN and RoI samplers draw from the global RNG (restored from the checkpoint);
* YOLOv3 with Beta mixup drawn inside data-loader workers, ``off_last_epochs`` switching mixup
  off after the interruption, and random shapes;
* ``bof pretrain`` with ``workers: 0``: its random crops draw from the global RNG.

The interruption is an exception raised right after a checkpoint is written, in the same
process; the restarted run re-seeds and must restore every stream from the checkpoint alone.
"""

from __future__ import annotations

import pytest
import torch

from bof.config import load_config
from bof.engine.checkpoint import RunCheckpoints, load_checkpoint
from bof.engine.pretrain import PretrainConfig, pretrain
from bof.engine.train import Trainer, train

pytestmark = pytest.mark.slow


class Interrupted(Exception):
    pass


def same_weights(path_a, path_b) -> bool:
    """model.pt ("model") or backbone.pt ("weights"): the same tensors, bit for bit."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    a, b = (saved["model"] if "model" in saved else saved["weights"] for saved in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


CASES = {
    # images large enough that the samplers choose (over 256 anchors, over 128 proposals an image)
    "faster_rcnn": (
        "faster_rcnn",
        ("optim.epochs=3", "model.min_size=160", "model.max_size=200", "model.rpn_min_size=0"),
        1,
    ),
    "yolov3_mixup_workers_shapes": (
        "yolov3",
        (
            "optim.epochs=4",
            "run.workers=2",
            "tricks.mixup.mode=beta",
            "tricks.mixup.off_last_epochs=2",  # on in epochs 1-2, off in 3-4: the switch falls after the break
            "tricks.random_shapes.enabled=true",
            "tricks.random_shapes.min=32",
            "tricks.random_shapes.max=96",
            "tricks.random_shapes.interval=2",
        ),
        2,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_interrupted_training_resumes_to_the_same_weights(tiny_config, tmp_path, monkeypatch, case):
    arch, overrides, break_after = CASES[case]
    path, config = tiny_config(arch, overrides)
    train(config, tmp_path / "reference", progress=False)

    original = Trainer.save

    def save_then_break(self):
        original(self)
        if self.state.epoch == break_after:
            raise Interrupted

    monkeypatch.setattr(Trainer, "save", save_then_break)
    with pytest.raises(Interrupted):
        train(load_config(path, list(overrides)), tmp_path / "interrupted", progress=False)
    monkeypatch.setattr(Trainer, "save", original)
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["progress"]["epoch"] == break_after
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    train(load_config(path, list(overrides)), tmp_path / "interrupted", progress=False)
    assert same_weights(tmp_path / "reference" / "model.pt", tmp_path / "interrupted" / "model.pt")


def test_an_interrupted_pretraining_resumes_to_the_same_backbone(tiny_synth, tmp_path, monkeypatch):
    config = PretrainConfig(
        data=str(tiny_synth / "classification"),
        width=0.125,
        depth=0.34,
        image_size=32,
        epochs=3,
        batch_size=4,
        warmup_epochs=0,
        workers=0,
        mixup=True,
    )
    pretrain(config, tmp_path / "reference", progress=False)

    original = RunCheckpoints.save

    def save_then_break(self, state):
        original(self, state)
        raise Interrupted

    monkeypatch.setattr(RunCheckpoints, "save", save_then_break)
    with pytest.raises(Interrupted):
        pretrain(config, tmp_path / "interrupted", progress=False)
    monkeypatch.setattr(RunCheckpoints, "save", original)
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["progress"]["epoch"] == 1
    torch.manual_seed(12345)
    pretrain(config, tmp_path / "interrupted", progress=False)
    assert same_weights(tmp_path / "reference" / "backbone.pt", tmp_path / "interrupted" / "backbone.pt")
    # each epoch's record once: the one written before the interrupted save was kept by its checkpoint
    logs = [(tmp_path / run / "train_log.jsonl").read_text() for run in ("reference", "interrupted")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 3
