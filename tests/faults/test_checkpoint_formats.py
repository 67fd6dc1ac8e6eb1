"""One checkpoint format for pretraining and training (issue 23), with a version key: checkpoints
of bof's earlier formats resume to the same result, another kind's is refused in one line."""

from __future__ import annotations

import json

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


def earlier_progress(progress: dict, curve: str, *, data_seconds: bool) -> dict:
    """Today's progress as an earlier format held it: the curve under ``curve``, and pretraining's
    without ``data_seconds``."""
    earlier = {(curve if key == "curve" else key): value for key, value in progress.items()}
    if not data_seconds:
        del earlier["data_seconds"]
    return earlier


PRETRAINING_FORMATS = {
    # before issue 23: no format key, no kind, the progress under ``state``
    "unversioned": lambda saved, progress: {**saved, "state": progress},
    "bof-checkpoint-2": lambda saved, progress: {
        **saved,
        "format": "bof-checkpoint-2",
        "kind": "pretrain",
        "progress": progress,
    },
}


@pytest.mark.parametrize("earlier", sorted(PRETRAINING_FORMATS))
def test_a_pretraining_checkpoint_of_an_earlier_format_resumes_to_the_same_backbone(
    earlier, tiny_synth, tmp_path, monkeypatch
):
    """Earlier pretraining checkpoints held the curve under ``top1`` and no data_seconds: resumed,
    they give the reference's backbone and its whole top-1 curve."""
    config = tiny_pretraining(tiny_synth)
    pretrain(config, tmp_path / "reference", progress=False)
    interrupt_after_first_save(monkeypatch, RunCheckpoints, "save")
    with pytest.raises(Interrupted):
        pretrain(config, tmp_path / "earlier", progress=False)
    path = tmp_path / "earlier" / "checkpoint.pt"
    saved = load_checkpoint(path)
    assert (saved["format"], saved["kind"], saved["progress"]["epoch"]) == ("bof-checkpoint-3", "pretrain", 1)
    progress = earlier_progress(saved["progress"], "top1", data_seconds=False)
    shared = {key: value for key, value in saved.items() if key not in ("format", "kind", "progress")}
    save_checkpoint(PRETRAINING_FORMATS[earlier](shared, progress), path)
    pretrain(config, tmp_path / "earlier", progress=False)
    assert same_weights(tmp_path / "reference" / "backbone.pt", tmp_path / "earlier" / "backbone.pt")
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("reference", "earlier")]
    assert metrics[0] == metrics[1] and len(metrics[0]["curve"]) == config.epochs


@pytest.mark.parametrize("earlier", ["bof-train-checkpoint-1", "bof-checkpoint-2"])
def test_a_training_checkpoint_of_an_earlier_format_resumes_to_the_same_weights(
    earlier, tiny_config, tmp_path, monkeypatch
):
    """Earlier training checkpoints held the curve under ``val_curve`` (``bof-train-checkpoint-1``:
    no kind either): resumed, they give the reference's weights and its whole validation curve."""
    path, config = tiny_config("yolov3", ("optim.epochs=2",))
    train(config, tmp_path / "reference", progress=False)
    interrupt_after_first_save(monkeypatch, Trainer, "save")
    with pytest.raises(Interrupted):
        train(load_config(path, ["optim.epochs=2"]), tmp_path / "earlier", progress=False)
    checkpoint = tmp_path / "earlier" / "checkpoint.pt"
    saved = load_checkpoint(checkpoint)
    progress = earlier_progress(saved["progress"], "val_curve", data_seconds=True)
    shared = {key: value for key, value in saved.items() if key not in ("format", "kind", "progress")}
    kind = {} if earlier == "bof-train-checkpoint-1" else {"kind": "train"}
    save_checkpoint({**shared, **kind, "format": earlier, "progress": progress}, checkpoint)
    train(load_config(path, ["optim.epochs=2"]), tmp_path / "earlier", progress=False)
    assert same_weights(tmp_path / "reference" / "model.pt", tmp_path / "earlier" / "model.pt")
    curves = [json.loads((tmp_path / run / "val_curve.json").read_text()) for run in ("reference", "earlier")]
    assert curves[0] == curves[1] and [point["epoch"] for point in curves[0]] == [1, 2]


def test_a_checkpoint_whose_progress_is_not_one_is_refused_naming_the_file(tiny_config, tmp_path, monkeypatch):
    path, config = tiny_config("yolov3", ("optim.epochs=2",))
    interrupt_after_first_save(monkeypatch, Trainer, "save")
    with pytest.raises(Interrupted):
        train(config, tmp_path / "run", progress=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    saved = load_checkpoint(checkpoint)
    save_checkpoint({**saved, "progress": {**saved["progress"], "epochs_done": 1}}, checkpoint)
    with pytest.raises(BofError) as error:
        train(config, tmp_path / "run", progress=False)
    assert str(error.value).startswith(f"{checkpoint}: the checkpoint's progress holds [")
    assert "'epochs_done'" in str(error.value) and str(error.value).endswith("'data_seconds', 'curve']")


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
