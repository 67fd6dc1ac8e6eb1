"""One checkpoint format for pretraining and training (issue 23), with a version key: checkpoints
of bof's earlier formats resume to the same result, another kind's is refused in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_pretraining

from bof.config import load_config
from bof.engine.checkpoint import RunCheckpoints, load_checkpoint, save_checkpoint
from bof.engine.pretrain import pretrain
from bof.engine.train import Trainer, train
from bof.errors import BofError


class Interrupted(Exception):
    pass


def same_weights(path_a, path_b) -> bool:
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    key = "weights" if "weights" in a else "model"
    return a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])


def interrupt_after_first_save(monkeypatch, target, name: str) -> None:
    original = getattr(target, name)

    def save_then_break(*args, **kwargs):
        original(*args, **kwargs)
        monkeypatch.setattr(target, name, original)
        raise Interrupted

    monkeypatch.setattr(target, name, save_then_break)


def test_a_pretraining_checkpoint_of_the_earlier_format_resumes_to_the_same_backbone(tiny_synth, tmp_path, monkeypatch):
    """Before: no format key, the progress under ``state``."""
    config = tiny_pretraining(tiny_synth)
    pretrain(config, tmp_path / "reference", progress=False)
    interrupt_after_first_save(monkeypatch, RunCheckpoints, "save")
    with pytest.raises(Interrupted):
        pretrain(config, tmp_path / "earlier", progress=False)
    path = tmp_path / "earlier" / "checkpoint.pt"
    saved = load_checkpoint(path)
    assert (saved["format"], saved["kind"], saved["progress"]["epoch"]) == ("bof-checkpoint-2", "pretrain", 1)
    earlier = {key: value for key, value in saved.items() if key not in ("format", "kind", "progress")}
    save_checkpoint({**earlier, "state": saved["progress"]}, path)
    pretrain(config, tmp_path / "earlier", progress=False)
    assert same_weights(tmp_path / "reference" / "backbone.pt", tmp_path / "earlier" / "backbone.pt")


def test_a_training_checkpoint_of_the_earlier_format_resumes_to_the_same_weights(tiny_config, tmp_path, monkeypatch):
    """Before: format ``bof-train-checkpoint-1``, no kind."""
    path, config = tiny_config("yolov3", ("optim.epochs=2",))
    train(config, tmp_path / "reference", progress=False)
    interrupt_after_first_save(monkeypatch, Trainer, "save")
    with pytest.raises(Interrupted):
        train(load_config(path, ["optim.epochs=2"]), tmp_path / "earlier", progress=False)
    checkpoint = tmp_path / "earlier" / "checkpoint.pt"
    saved = load_checkpoint(checkpoint)
    earlier = {key: value for key, value in saved.items() if key != "kind"}
    save_checkpoint({**earlier, "format": "bof-train-checkpoint-1"}, checkpoint)
    train(load_config(path, ["optim.epochs=2"]), tmp_path / "earlier", progress=False)
    assert same_weights(tmp_path / "reference" / "model.pt", tmp_path / "earlier" / "model.pt")


def test_a_checkpoint_of_the_other_kind_or_an_unknown_format_is_refused_in_one_line(tiny_synth, tiny_config, tmp_path):
    pretrain(tiny_pretraining(tiny_synth), tmp_path / "pretrain", progress=False)
    _, config = tiny_config("yolov3", ("optim.epochs=1",))
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(load_checkpoint(tmp_path / "pretrain" / "checkpoint.pt"), run / "checkpoint.pt")
    with pytest.raises(BofError) as error:
        train(config, run, progress=False)
    assert str(error.value) == f"{run / 'checkpoint.pt'}: a pretrain checkpoint, not a train one"
    save_checkpoint({"format": "bof-checkpoint-9", "kind": "train"}, run / "checkpoint.pt")
    with pytest.raises(BofError) as error:
        train(config, run, progress=False)
    assert str(error.value) == f"{run / 'checkpoint.pt'}: not a bof train checkpoint (format 'bof-checkpoint-9')"
