"""``bof train``: every detector's training, in the loop pretraining runs too (`bof.engine.loop`).

The loop knows nothing of the tricks: mixup, augmentation and random shapes arrive through
the dataset and the batch sampler (mixup's ``loss_scale`` as each image's ``loss_weight``),
label smoothing and mixup box weights through the model's losses, the schedule through
``LambdaLR(lr_at)``, synchronized BN through the model. Everything it writes goes to the run folder::

    checkpoint.pt    model, optimizer, scheduler, scaler, RNG, epoch/iteration (every epoch, atomic);
                     the generation before is kept as checkpoint.prev.pt
    model.pt         inference weights (plain BN) + config + classes
    config.yaml      the resolved config
    train_log.jsonl  the losses (their mean) and lr every ``run.log_every`` iterations and at each epoch's end
    val_curve.json   validation metric every ``run.val_every`` epochs (Figure 6b)
    metrics.json     the final validation report
    predictions/     the final validation's detections in the ecosystem's formats (``bof predict``'s
                     output: ``voc/comp4_det_<split>_<class>.txt`` and ``coco_results.json``)
    run.json         config, seed, versions, git commit, device, wall time, images/s, metrics

A run folder that already holds a checkpoint of the same config resumes from it (from the
generation before when the latest is damaged). One process writes a run folder at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from torch import nn

from bof.config import TrainConfig, to_dict
from bof.data.detection import collate_detection
from bof.data.training import KeyedBatchSampler
from bof.engine import distributed, loop
from bof.engine.build import open_split, size_schedule, training_set
from bof.engine.checkpoint import load_checkpoint, save_checkpoint
from bof.engine.predict import MODEL_FORMAT, evaluate_model, write_results
from bof.engine.provenance import environment
from bof.errors import ConfigError
from bof.io import atomic_write_json, atomic_write_text, sha256
from bof.models import build_detector
from bof.models.published import published_path
from bof.tricks.lr_schedule import build_scheduler
from bof.tricks.sync_bn import convert_batchnorm, plain_batchnorm
from bof.tricks.weight_decay import parameter_groups

RUN_ONLY_KEYS = ("workers", "log_every", "device")  # may change between a run and its resume


def comparable(config: dict) -> dict:
    return {**config, "run": {k: v for k, v in config["run"].items() if k not in RUN_ONLY_KEYS}}


def move(images, targets, device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """uint8 images -> float [0, 1] on the device; per-box tensors of the targets alongside."""
    images = [image.to(device, non_blocking=True).float().div_(255) for image in images]
    targets = [
        {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
        for t in targets
    ]
    return images, targets


class Trainer(loop.TrainingLoop):
    """One detector's training: its data, model and optimizer, in the shared `TrainingLoop`."""

    kind = "train"

    def __init__(self, config: TrainConfig, out: Path, context: distributed.Context, *, progress: bool = True):
        super().__init__(config, out, context, progress=progress)
        self.log_every, self.epochs = config.run.log_every, config.optim.epochs
        self.train_data, self.val_data = open_split(config.data, "train"), open_split(config.data, "val")
        if self.val_data.classes != self.train_data.classes:
            raise ConfigError(
                f"data: train and val have different classes ({self.train_data.classes} vs {self.val_data.classes})"
            )
        self.classes = self.train_data.classes
        self.per_rank_batch = config.optim.batch_size // context.world_size
        if self.per_rank_batch < 1 or config.optim.batch_size % context.world_size:
            raise ConfigError(
                f"optim.batch_size {config.optim.batch_size} does not split over {context.world_size} processes"
            )
        self.iters_per_epoch = len(self.train_data) // config.optim.batch_size
        if self.iters_per_epoch < 1:
            raise ConfigError(
                f"optim.batch_size {config.optim.batch_size} is larger than the training set ({len(self.train_data)} images)"
            )
        from_file = config.model.pretrained not in (None, "imagenet")
        # a retrained backbone keeps its path: a checkpoint started from other weights must not resume
        self.pretrained_sha256 = sha256(config.model.pretrained) if from_file else None
        model = build_detector(
            config, len(self.classes), load_checkpoint(config.model.pretrained) if from_file else None
        )
        if config.model.pretrained == "imagenet":  # the published file it loaded (its digest in run.json)
            self.pretrained_sha256 = sha256(published_path(config.model.backbone))
        bn = config.tricks.batchnorm
        self.place(convert_batchnorm(model, bn.mode, group_size=bn.group_size))
        sgd = optimizer(self.model, config.optim)
        self.optimize_with(sgd, scheduler(sgd, config, self.iters_per_epoch), amp=config.run.amp)
        self.training_set = training_set(config, self.train_data)
        self.size_at = size_schedule(config)

    def conflict(self, saved: dict) -> str | None:
        anchors = getattr(self.model, "anchors", None)
        if comparable(saved["config"]) != comparable(to_dict(self.config)):
            return "it holds a run of another config"
        # the checkpoint is loaded to the CPU, the model's anchors live on its device
        if anchors is not None and not torch.equal(saved["model"]["anchors"], anchors.cpu()):
            return f"it was trained with other anchors than {self.config.model.anchors!r} holds now"
        if saved.get("pretrained_sha256") != self.pretrained_sha256:
            return f"it started from another backbone than {self.config.model.pretrained} holds now"
        return None

    def checkpoint_extra(self) -> dict:
        return {"classes": self.classes, "pretrained_sha256": self.pretrained_sha256}

    def loader(self, epoch: int) -> torch.utils.data.DataLoader:
        sampler = loop.epoch_sampler(self.training_set, self.context, self.config.seed, epoch)
        batches = KeyedBatchSampler(
            sampler,
            self.per_rank_batch,
            epoch=epoch,
            first_iteration=epoch * self.iters_per_epoch,
            size_at=self.size_at,
        )
        return torch.utils.data.DataLoader(
            self.training_set,
            batch_sampler=batches,
            num_workers=self.config.run.workers,
            collate_fn=collate_detection,
            pin_memory=self.context.device.type == "cuda",
        )

    def losses(self, batch, epoch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        images, targets = move(*batch, self.context.device)
        with torch.autocast(self.context.device.type, dtype=torch.float16, enabled=self.use_amp):
            terms = self.network(images, targets)
        return terms, sum(terms.values()) * batch_loss_weight(targets), len(images)

    def log_losses(self, rows: list[dict[str, float]], epoch: int, bar) -> None:
        record = {name: sum(row[name] for row in rows) / len(rows) for name in rows[0]}
        record.update(iteration=self.state.iteration, epoch=epoch + 1, lr=self.optimizer.param_groups[0]["lr"])
        bar.set_postfix(
            loss=f"{sum(v for k, v in record.items() if k.startswith('loss')):.3f}", lr=f"{record['lr']:.2e}"
        )
        if self.context.is_main:
            with open(self.log_path, "a") as stream:
                stream.write(json.dumps(record) + "\n")

    def validates(self, epoch: int) -> bool:
        return bool(self.config.run.val_every) and (epoch + 1) % self.config.run.val_every == 0

    def evaluate(self) -> dict:
        return evaluate_model(
            self.model,
            self.val_data,
            self.context,
            batch_size=max(1, self.per_rank_batch),
            workers=self.config.run.workers,
        )

    def validate(self, epoch: int) -> dict:
        report = self.evaluate()
        if self.context.is_main:
            point = {"epoch": epoch + 1, "iteration": self.state.iteration, "metric": report["metric_name"]}
            self.state.curve.append({**point, "value": report["value"]})  # on disk once its checkpoint is saved
        return report

    final_report = evaluate  # a run resumed after its last epoch evaluates again

    def started(self, resumed: bool) -> None:
        if not self.context.is_main:
            return
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(to_dict(self.config), sort_keys=False))
        # the curve says what the checkpoint holds: not a validation whose checkpoint could not be saved
        if resumed or (self.out / "val_curve.json").exists():
            atomic_write_json(self.out / "val_curve.json", self.state.curve)
        if resumed:
            print(f"resuming {self.out} at epoch {self.state.epoch + 1} (iteration {self.state.iteration})")

    def after_save(self) -> None:
        if self.context.is_main and self.state.curve:
            atomic_write_json(self.out / "val_curve.json", self.state.curve)

    def finish(self, report: dict, wall_seconds: float) -> None:
        out = self.out
        inference = plain_batchnorm(self.model).state_dict()
        save_checkpoint(
            {"format": MODEL_FORMAT, "config": to_dict(self.config), "classes": self.classes, "model": inference},
            out / "model.pt",
        )
        # again here: a run resumed after its last epoch (Snakemake deleted the outputs of the
        # killed job) validates no more, and the curve lives on in the checkpoint
        atomic_write_json(out / "val_curve.json", self.state.curve)
        metrics = {key: value for key, value in report.items() if key not in ("predictions", "predict_seconds")}
        split = self.config.data.val[0].split(":")[-1] if self.config.data.format == "voc" else "val"
        write_results(report["predictions"], self.val_data, out / "predictions", split=split)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "run.json", {**loop.run_record(self, wall_seconds), **self.record(report)})

    def record(self, report: dict) -> dict:
        """What a detector's ``run.json`` holds beside the shared part."""
        cuda = self.context.device.type == "cuda"
        return {
            "classes": self.classes,
            "train_images": len(self.train_data),
            "val_images": len(self.val_data),
            "iterations": self.state.iteration,
            "batchnorm_layers": sorted(
                {type(m).__name__ for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
            ),
            "peak_memory_bytes": torch.cuda.max_memory_allocated(self.context.device) if cuda else None,
            "inference_images_per_second": len(self.val_data) / report["predict_seconds"],
            "metric": {"name": report["metric_name"], "value": report["value"]},
            "anchors": self.model.anchors.tolist() if hasattr(self.model, "anchors") else None,
            "pretrained_sha256": self.pretrained_sha256,
            **environment(self.context.device),
        }


def batch_loss_weight(targets: list[dict]) -> float:
    """How much a batch's loss counts: its images' ``loss_weight`` (the training set's: mixup's
    ``loss_scale`` in the epochs it mixes, 1 otherwise; images of one batch share the epoch, so
    the mean is their common weight)."""
    weights = [target.get("loss_weight", 1.0) for target in targets]
    return weights[0] if len(set(weights)) == 1 else sum(weights) / len(weights)


def optimizer(model: nn.Module, optim) -> torch.optim.SGD:
    """SGD with momentum over `parameter_groups` (no decay on BN and biases unless asked)."""
    groups = parameter_groups(model, optim.weight_decay, decay_norm_and_bias=optim.decay_norm_and_bias)
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)


def scheduler(sgd: torch.optim.SGD, config: TrainConfig, iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The trick's schedule (step or cosine), per iteration, after the warmup."""
    optim = config.optim
    return build_scheduler(
        sgd,
        iters_per_epoch=iters_per_epoch,
        epochs=optim.epochs,
        warmup_epochs=optim.warmup_epochs,
        mode=config.tricks.lr_schedule,
        step_epochs=optim.step_epochs,
        step_factor=optim.step_factor,
        warmup_start=optim.warmup_start,
    )


def train(config: TrainConfig, out: str | Path, *, progress: bool = True, restart: bool = False) -> dict:
    """Train (or resume) one run; returns the final validation report. ``restart`` sets the
    run folder's checkpoint aside and trains from scratch."""
    context = distributed.setup(config.run.device)
    try:
        return Trainer(config, Path(out), context, progress=progress).fit(restart=restart)
    finally:
        distributed.teardown()
