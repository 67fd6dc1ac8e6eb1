"""``bof train``/``predict``/``pretrain`` end to end on tiny configs: outputs, provenance,
resume after a kill, NaN handling, results files that ``bof evaluate`` scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_pretraining

from bof.cli import main
from bof.config import TrainConfig, build, to_dict
from bof.engine.checkpoint import load_checkpoint
from bof.engine.loop import NonFiniteLossError
from bof.engine.train import train
from bof.errors import BofError

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("arch", ["yolov3", "faster_rcnn"])
def test_train_writes_a_complete_run(tiny_config, tmp_path, arch):
    _, config = tiny_config(arch)
    out = tmp_path / "run"
    report = train(config, out, progress=False)
    for name in (
        "checkpoint.pt",
        "model.pt",
        "config.yaml",
        "train_log.jsonl",
        "val_curve.json",
        "metrics.json",
        "run.json",
    ):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 1 and run["config"]["model"]["arch"] == arch
    assert run["versions"]["torch"] == torch.__version__ and "commit" in run["git"] and run["device"]
    assert run["images_per_second"] > 0 and run["iterations"] == 2 * (12 // 4)
    assert 0 < run["data_wait_share"] < 1 and run["peak_memory_bytes"] is None  # CPU: no CUDA memory to report
    curve = json.loads((out / "val_curve.json").read_text())
    assert [p["epoch"] for p in curve] == [1, 2] and all(p["metric"] == "mAP" for p in curve)
    assert report["value"] == curve[-1]["value"] == json.loads((out / "metrics.json").read_text())["mAP"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["iteration"] == 6 and all(k in log[0] for k in ("lr", "epoch"))
    saved = load_checkpoint(out / "model.pt")
    assert saved["format"] == "bof-model-1" and saved["classes"] == ["circle", "octagon", "square", "diamond"]
    # the final validation's detections, as `bof predict` writes them, score the reported metric
    voc_files = sorted(p.name for p in (out / "predictions" / "voc").iterdir())
    assert voc_files == [f"comp4_det_test_{c}.txt" for c in sorted(saved["classes"])]
    assert main(["evaluate", "voc", "--devkit", config.data.root, "--results", str(out / "predictions" / "voc"),
                 "--out", str(tmp_path / "voc.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "voc.json").read_text())["mAP"] == pytest.approx(report["value"], abs=1e-9)
    assert json.loads((out / "predictions" / "coco_results.json").read_text()) is not None


def test_predict_then_evaluate_reproduces_the_training_metric(tiny_config, tmp_path, tiny_synth, capsys):
    _, config = tiny_config("yolov3", ("optim.epochs=1",))
    out = tmp_path / "run"
    report = train(config, out, progress=False)  # validated in this process (run.workers 0)
    predict = ["predict", "--model", str(out / "model.pt"), "--out", str(tmp_path / "pred"), "--workers", "2"]
    assert main(predict) == 0  # two loader processes, batches copied to the CPU whole
    assert (tmp_path / "pred" / "coco_results.json").is_file()
    assert (
        main(
            [
                "evaluate",
                "voc",
                "--devkit",
                str(tiny_synth / "VOCdevkit"),
                "--results",
                str(tmp_path / "pred" / "voc"),
                "--out",
                str(tmp_path / "voc.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "voc.json").read_text())["mAP"] == pytest.approx(report["value"], abs=1e-9)


def run_cli(config_path, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "bof", "train", "--config", str(config_path), "--out", str(out), "--quiet", *extra],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_run_resumes_to_the_same_result(tiny_config, tmp_path):
    path, config = tiny_config("yolov3", ("optim.epochs=4",))
    overrides = ("--set", "optim.epochs=4")
    reference = tmp_path / "reference"
    assert run_cli(path, reference, *overrides).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    process = run_cli(path, killed, *overrides)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():  # wait for epoch 1 to be saved, then kill mid-run
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epoch_at_kill = load_checkpoint(killed / "checkpoint.pt")["progress"]["epoch"]
    assert epoch_at_kill < 4 and not (killed / "model.pt").exists()
    resumed = run_cli(path, killed, *overrides)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resuming {killed} at epoch {epoch_at_kill + 1}" in output
    expected, got = load_checkpoint(reference / "model.pt")["model"], load_checkpoint(killed / "model.pt")["model"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert (
        json.loads((killed / "metrics.json").read_text())["mAP"]
        == json.loads((reference / "metrics.json").read_text())["mAP"]
    )


def test_another_config_or_restart_starts_over_and_keeps_the_old_checkpoint(tiny_config, tmp_path, capsys):
    """A changed preset setting reruns the job in the same folder: the run must start over
    (not refuse, not resume another run's weights), and the old checkpoint stays aside."""
    _, config = tiny_config("yolov3", ("optim.epochs=1",))
    train(config, tmp_path / "run", progress=False)
    _, other = tiny_config("yolov3", ("optim.epochs=1", "optim.lr=0.01"))
    train(other, tmp_path / "run", progress=False)
    assert "starting" in capsys.readouterr().out
    (stale,) = (tmp_path / "run").glob("checkpoint.stale-*.pt")
    assert load_checkpoint(stale)["config"]["optim"]["lr"] == 0.002
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["optim"]["lr"] == 0.01
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["optim"]["lr"] == 0.01
    # the same config resumes the finished run (nothing to train), --restart trains it again
    assert main(["train", "--config-json", json.dumps(to_dict(other)), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out and len(list((tmp_path / "run").glob("checkpoint.stale-*.pt"))) == 1
    assert (
        main(
            [
                "train",
                "--config-json",
                json.dumps(to_dict(other)),
                "--out",
                str(tmp_path / "run"),
                "--quiet",
                "--restart",
            ]
        )
        == 0
    )
    assert "starting" in capsys.readouterr().out and len(list((tmp_path / "run").glob("checkpoint.stale-*.pt"))) == 2


def test_non_finite_loss_stops_with_iteration_and_term(tiny_config, tmp_path, monkeypatch):
    _, config = tiny_config("yolov3", ("optim.epochs=2",))
    import bof.models.yolov3 as yolov3

    original, calls = yolov3.yolo_loss, []

    def poisoned(*args, **kwargs):
        losses = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 5:  # iteration 4, in the second epoch (3 iterations an epoch)
            losses["loss_scale"] = losses["loss_scale"] * float("nan")
        return losses

    monkeypatch.setattr(yolov3, "yolo_loss", poisoned)
    with pytest.raises(
        NonFiniteLossError,
        match=r"iteration 4 \(epoch 2\): loss term 'loss_scale' is nan; .*checkpoint.pt \(after epoch 1\)",
    ):
        train(config, tmp_path / "run", progress=False)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["progress"]["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point()
    )


def test_with_a_grad_scaler_a_non_finite_loss_is_caught_at_the_next_log_point(tiny_config, tmp_path, monkeypatch):
    """Under AMP the losses are read back every log_every steps, not every step: a GradScaler
    (here a CPU one, as on a GPU) skips the non-finite step, training goes on to the log point
    (the epoch's end), and the error still names the iteration; the weights stayed finite."""
    _, config = tiny_config("yolov3", ("optim.epochs=2", "run.log_every=20"))
    import bof.engine.train as train_module
    import bof.models.yolov3 as yolov3

    original, calls = yolov3.yolo_loss, []

    def poisoned(*args, **kwargs):
        losses = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # iteration 1 of 3 in the first epoch
            losses["loss_center"] = losses["loss_center"] * float("nan")
        return losses

    monkeypatch.setattr(yolov3, "yolo_loss", poisoned)
    trainer = train_module.Trainer(config, tmp_path / "run", train_module.distributed.setup("cpu"), progress=False)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)
    with pytest.raises(
        NonFiniteLossError, match=r"iteration 1 \(epoch 1\): loss term 'loss_center' is nan; .*none yet"
    ):
        trainer.fit()
    assert len(calls) == 3  # the third step ran before the check at the epoch's end
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_pretraining_under_a_grad_scaler_reads_its_losses_at_the_epochs_end(tiny_synth, tmp_path, monkeypatch):
    """Pretraining, too, reads its losses back every CHECK_EVERY (50) steps or at the epoch's end
    under AMP (a CPU GradScaler stands in): a NaN at iteration 1 is named after the epoch's last
    step ran, and no checkpoint is written."""
    import bof.engine.pretrain as pretrain_module

    real_scaler, real_loss, calls = torch.amp.GradScaler, pretrain_module.F.cross_entropy, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real_scaler("cpu", enabled=True))
    monkeypatch.setattr(pretrain_module.F, "cross_entropy", poisoned)
    config = tiny_pretraining(tiny_synth)
    iterations = len(pretrain_module.image_folders(config)[0]) // 4
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 \(epoch 1\): loss term 'loss' is nan; .*none yet"):
        pretrain_module.pretrain(config, tmp_path / "run", progress=False)
    assert iterations > 2 and len(calls) == iterations
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_pretrain_then_detector_loads_the_backbone(tiny_synth, tiny_config, tmp_path):
    out = tmp_path / "pretrain"
    args = [
        "pretrain",
        "--out",
        str(out),
        "--quiet",
        "--set",
        f"data={tiny_synth / 'classification'}",
        "--set",
        "width=0.125",
        "--set",
        "depth=0.34",
    ]
    args += [
        "--set",
        "image_size=32",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=4",
        "--set",
        "warmup_epochs=0",
        "--set",
        "workers=0",
        "--set",
        "mixup=true",
    ]
    assert main(args) == 0
    backbone = load_checkpoint(out / "backbone.pt")
    assert backbone["format"] == "bof-backbone-1" and backbone["mixup"] is True and 0 <= backbone["top1"] <= 1
    # a record an epoch, what `bof status` reads without loading torch
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in log] == [1, 2] and log[-1]["top1"] == backbone["top1"]
    _, config = tiny_config("yolov3", ("optim.epochs=1", f"model.pretrained={out / 'backbone.pt'}"))
    from bof.models import build_detector

    model = build_detector(config, 4, backbone)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in backbone["weights"].items())
    _, wrong = tiny_config("yolov3", ("model.width=0.25", f"model.pretrained={out / 'backbone.pt'}"))
    with pytest.raises(BofError, match="checkpoint is for"):
        build_detector(wrong, 4, backbone)


def test_saved_config_rebuilds(tiny_config, tmp_path):
    _, config = tiny_config("faster_rcnn", ("optim.epochs=1",))
    train(config, tmp_path / "run", progress=False)
    assert build(TrainConfig, load_checkpoint(tmp_path / "run" / "model.pt")["config"]) == config


def test_mixup_loss_scale_multiplies_the_whole_loss_while_mixing(tiny_config, tmp_path):
    """GluonCV's Faster R-CNN mixup (0.5 : 0.5, every box weight 1) halves the whole loss: with plain
    SGD (no momentum, no weight decay) that is the same update as half the learning rate."""
    plain_sgd = ("optim.epochs=1", "optim.momentum=0", "optim.weight_decay=0", "optim.warmup_epochs=0",
                 "tricks.lr_schedule=step", "tricks.mixup.mode=fixed", "tricks.mixup.weighted=false",
                 "tricks.mixup.off_last_epochs=0")  # fmt: skip

    def weights(name, *overrides):
        _, config = tiny_config("faster_rcnn", (*plain_sgd, *overrides))
        train(config, tmp_path / name, progress=False)
        return load_checkpoint(tmp_path / name / "model.pt")["model"]

    halved = weights("halved", "tricks.mixup.loss_scale=0.5", "optim.lr=0.004")
    unscaled_half_lr = weights("half_lr", "optim.lr=0.002")
    unscaled = weights("unscaled", "optim.lr=0.004")
    trained = [name for name, value in halved.items() if value.is_floating_point() and "running" not in name]
    assert all(torch.allclose(halved[n], unscaled_half_lr[n], rtol=1e-5, atol=1e-7) for n in trained)
    assert not all(torch.allclose(halved[n], unscaled[n], rtol=1e-5, atol=1e-7) for n in trained)
    # in the epochs without mixup (here the only one) the loss is not scaled
    off = ("optim.lr=0.004", "tricks.mixup.off_last_epochs=1")
    not_mixing_scaled, not_mixing = weights("off_scaled", *off, "tricks.mixup.loss_scale=0.5"), weights("off", *off)
    assert all(torch.equal(not_mixing_scaled[n], not_mixing[n]) for n in trained)


def test_a_retrained_backbone_at_the_same_path_starts_the_run_over(tiny_synth, tiny_config, tmp_path, capsys):
    """Snakemake reruns a training whose backbone was pretrained again (same path, same config):
    the run must not resume the checkpoint that started from the old weights."""
    backbone = tmp_path / "pretrain" / "backbone.pt"

    def pretrain(seed):
        sets = [f"data={tiny_synth / 'classification'}", "width=0.125", "depth=0.34", "image_size=32", "epochs=1",
                "batch_size=4", "warmup_epochs=0", "workers=0", f"seed={seed}"]  # fmt: skip
        assert main(["pretrain", "--out", str(backbone.parent), "--quiet", "--restart",
                     *[arg for s in sets for arg in ("--set", s)]]) == 0  # fmt: skip

    pretrain(0)
    _, config = tiny_config("yolov3", ("optim.epochs=1", f"model.pretrained={backbone}"))
    train(config, tmp_path / "run", progress=False)
    first = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["pretrained_sha256"]
    train(config, tmp_path / "run", progress=False)  # the same backbone: resumes (nothing left to train)
    assert "resuming" in capsys.readouterr().out and not list((tmp_path / "run").glob("checkpoint.stale-*.pt"))
    pretrain(1)
    train(config, tmp_path / "run", progress=False)
    assert "another backbone" in capsys.readouterr().out
    (stale,) = (tmp_path / "run").glob("checkpoint.stale-*.pt")
    assert load_checkpoint(stale)["pretrained_sha256"] == first
    now = json.loads((tmp_path / "run" / "run.json").read_text())["pretrained_sha256"]
    assert now != first and now == load_checkpoint(tmp_path / "run" / "checkpoint.pt")["pretrained_sha256"]


def test_git_state_is_dirty_only_when_a_tracked_file_changed(tmp_path):
    from bof.engine.provenance import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text("{}")  # the pipeline's own untracked outputs
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True


def test_faster_rcnn_warmup_starts_at_a_third_of_the_lr(tiny_config, tmp_path):
    """GluonCV's Faster R-CNN warmup (train_faster_rcnn.py: ``warmup_lr`` from lr/3, the coco
    preset's ``warmup_start``): the engine's first step runs at lr/3, the middle of the warmup
    at 2/3 of it, and its end at the full lr."""
    from bof.engine import distributed
    from bof.engine.train import Trainer

    _, config = tiny_config(
        "faster_rcnn",
        ("optim.warmup_start=0.3333333333", "optim.lr=0.03", "optim.warmup_epochs=2", "optim.epochs=3"),
    )
    trainer = Trainer(config, tmp_path / "run", distributed.setup("cpu"), progress=False)
    assert trainer.iters_per_epoch == 3  # 12 images, batch 4: the warmup is 6 iterations
    seen = []
    for _ in range(7):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert seen[0] == pytest.approx(0.01)
    assert seen[3] == pytest.approx(0.02)
    assert seen[6] == pytest.approx(0.03)


def test_validation_draws_nothing_from_the_global_generator(tiny_config):
    """Faster R-CNN's samplers draw from the global generator: if validating drew from it too,
    ``run.val_every`` would change the training's random numbers (it did: a loader seeds its
    workers from the global generator unless given its own)."""
    from bof.engine import distributed
    from bof.engine.build import open_split
    from bof.engine.predict import predict
    from bof.models import build_detector

    _, config = tiny_config("faster_rcnn")
    dataset = open_split(config.data, "val")
    model = build_detector(config, len(dataset.classes))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    predict(model, dataset, distributed.setup("cpu"), batch_size=4)
    assert torch.equal(torch.get_rng_state(), before)
