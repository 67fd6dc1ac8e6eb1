"""``bof train``: one training loop for every detector.

The loop knows almost nothing of the tricks: mixup, augmentation and random shapes arrive
through the dataset and the batch sampler, label smoothing and mixup weights through the
model's losses (the loop only applies a mixup's ``loss_scale`` while it mixes), the schedule
through ``LambdaLR(lr_at)``, synchronized BN through the model. Everything it writes goes to the run folder::

    checkpoint.pt    model, optimizer, scheduler, scaler, RNG, epoch/iteration (every epoch, atomic);
                     the generation before is kept as checkpoint.prev.pt
    model.pt         inference weights (plain BN) + config + classes
    config.yaml      the resolved config
    train_log.jsonl  losses, lr and throughput every ``run.log_every`` iterations
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
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bof.config import TrainConfig, to_dict
from bof.data.detection import collate_detection
from bof.data.training import KeyedBatchSampler
from bof.engine import distributed, loop
from bof.engine.build import open_split, size_schedule, training_set
from bof.engine.checkpoint import RunCheckpoints, load_checkpoint, rng_states, save_checkpoint
from bof.engine.lock import hold_run_folder
from bof.engine.predict import MODEL_FORMAT, evaluate_model, write_results
from bof.engine.provenance import environment
from bof.errors import ConfigError
from bof.io import atomic_write_json, atomic_write_text, sha256
from bof.models import build_detector
from bof.tricks.lr_schedule import build_scheduler
from bof.tricks.sync_bn import convert_batchnorm, plain_batchnorm
from bof.tricks.weight_decay import parameter_groups

RUN_ONLY_KEYS = ("workers", "log_every", "device")  # may change between a run and its resume


@dataclass
class Progress:
    epoch: int = 0  # the next epoch to run
    iteration: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    data_seconds: float = 0.0  # of train_seconds, waiting for the data loader's next batch
    val_curve: list[dict] = field(default_factory=list)


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


class Trainer:
    """Holds what one run needs; ``fit()`` runs the remaining epochs."""

    def __init__(self, config: TrainConfig, out: Path, context: distributed.Context, *, progress: bool = True):
        self.config, self.out, self.context, self.show_progress = config, Path(out), context, progress
        self.checkpoints = RunCheckpoints(self.out, context)
        self.log_path = self.out / "train_log.jsonl"
        torch.manual_seed(config.seed)
        self.train_data = open_split(config.data, "train")
        self.val_data = open_split(config.data, "val")
        if self.val_data.classes != self.train_data.classes:
            raise ConfigError(
                f"data: train and val have different classes ({self.train_data.classes} vs {self.val_data.classes})"
            )
        self.classes = self.train_data.classes
        per_rank_batch = config.optim.batch_size // context.world_size
        if per_rank_batch < 1 or config.optim.batch_size % context.world_size:
            raise ConfigError(
                f"optim.batch_size {config.optim.batch_size} does not split over {context.world_size} processes"
            )
        self.per_rank_batch = per_rank_batch
        self.iters_per_epoch = len(self.train_data) // config.optim.batch_size
        if self.iters_per_epoch < 1:
            raise ConfigError(
                f"optim.batch_size {config.optim.batch_size} is larger than the training set ({len(self.train_data)} images)"
            )
        from_file = config.model.pretrained not in (None, "imagenet")
        pretrained = load_checkpoint(config.model.pretrained) if from_file else None
        # a retrained backbone keeps its path: a checkpoint started from other weights must not resume
        self.pretrained_sha256 = sha256(config.model.pretrained) if from_file else None
        model = build_detector(config, len(self.classes), pretrained)
        bn = config.tricks.batchnorm
        self.model = convert_batchnorm(model, bn.mode, group_size=bn.group_size).to(context.device)
        if context.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        groups = parameter_groups(
            self.model, config.optim.weight_decay, decay_norm_and_bias=config.optim.decay_norm_and_bias
        )
        self.optimizer = torch.optim.SGD(groups, lr=config.optim.lr, momentum=config.optim.momentum)
        self.scheduler = build_scheduler(
            self.optimizer,
            iters_per_epoch=self.iters_per_epoch,
            epochs=config.optim.epochs,
            warmup_epochs=config.optim.warmup_epochs,
            mode=config.tricks.lr_schedule,
            step_epochs=config.optim.step_epochs,
            step_factor=config.optim.step_factor,
            warmup_start=config.optim.warmup_start,
        )
        self.use_amp = config.run.amp and context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(context.device.type, enabled=self.use_amp)
        self.network: nn.Module = self.model
        if context.distributed:
            self.network = DistributedDataParallel(
                self.model, device_ids=[context.local_rank] if context.device.type == "cuda" else None
            )
        self.state = Progress()
        self.training_set = training_set(config, self.train_data)
        self.size_at = size_schedule(config)

    # --- checkpoints ---

    def resume(self, *, restart: bool = False) -> bool:
        """Continue from the run folder's newest intact checkpoint. One of another config (the
        preset changed, Snakemake reruns the job) is set aside, not lost, and the run starts over;
        with ``restart`` the checkpoints are set aside unread (a damaged one cannot block it)."""
        if restart:
            self.checkpoints.start_over("--restart", with_them=(self.log_path,))
            return False
        saved = self.checkpoints.load()
        if saved is None:
            return False
        saved = loop.current_format(saved, "train", self.checkpoints.loaded_from)
        anchors = getattr(self.model, "anchors", None)
        reason = None
        if comparable(saved["config"]) != comparable(to_dict(self.config)):
            reason = "it holds a run of another config"
        # the checkpoint is loaded to the CPU, the model's anchors live on its device
        elif anchors is not None and not torch.equal(saved["model"]["anchors"], anchors.cpu()):
            reason = f"it was trained with other anchors than {self.config.model.anchors!r} holds now"
        elif saved.get("pretrained_sha256") != self.pretrained_sha256:
            reason = f"it started from another backbone than {self.config.model.pretrained} holds now"
        if reason:
            self.checkpoints.start_over(reason, with_them=(self.log_path,))
            return False
        loop.restore(saved, self)
        self.state = Progress(**saved["progress"])
        return True

    def save(self) -> None:
        rng = rng_states(self.context)  # every rank's, before the others return
        if not self.context.is_main:
            return
        progress = vars(self.state)
        extra = {"classes": self.classes, "pretrained_sha256": self.pretrained_sha256}
        self.checkpoints.save(loop.checkpoint("train", self, rng, progress, **extra))

    # --- the loop ---

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

    def train_epoch(self, epoch: int, log) -> None:
        self.network.train()
        loader = self.loader(epoch)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.optim.epochs}",
            unit="it",
            disable=not (self.show_progress and self.context.is_main),
            leave=False,
        )
        mixup = self.config.tricks.mixup
        # GluonCV's Faster R-CNN halves the whole loss while it mixes (mix_ratio); 1 otherwise
        loss_scale = mixup.loss_scale if mixup.active(epoch, self.config.optim.epochs) else 1.0
        losses = loop.LossReader(self, epoch, self.state.epoch)
        started = waiting = time.perf_counter()
        for images, targets in bar:
            self.state.data_seconds += time.perf_counter() - waiting
            images, targets = move(images, targets, self.context.device)
            with torch.autocast(self.context.device.type, dtype=torch.float16, enabled=self.use_amp):
                terms = self.network(images, targets)
            losses.add(self.state.iteration, terms)
            loop.optimizer_step(sum(terms.values()) * loss_scale, self.optimizer, self.scheduler, self.scaler)
            self.state.iteration += 1
            self.state.images_seen += len(images) * self.context.world_size
            if len(losses) == self.config.run.log_every or self.state.iteration % self.iters_per_epoch == 0:
                rows = losses.read()
                record = {name: sum(row[name] for row in rows) / len(rows) for name in rows[0]}
                record.update(iteration=self.state.iteration, epoch=epoch + 1, lr=self.optimizer.param_groups[0]["lr"])
                bar.set_postfix(
                    loss=f"{sum(v for k, v in record.items() if k.startswith('loss')):.3f}", lr=f"{record['lr']:.2e}"
                )
                log(record)
            waiting = time.perf_counter()
        self.state.train_seconds += time.perf_counter() - started

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
            point = {
                "epoch": epoch + 1,
                "iteration": self.state.iteration,
                "metric": report["metric_name"],
                "value": report["value"],
            }
            self.state.val_curve.append(point)  # on disk once the checkpoint holding it is saved
        return report

    def fit(self, *, restart: bool = False) -> dict:
        """Hold the run folder (main process) and train the remaining epochs."""
        with hold_run_folder(self.out, "bof train", self.context):
            return self._fit(restart)

    def _fit(self, restart: bool) -> dict:
        config, out = self.config, self.out
        resumed = self.resume(restart=restart)
        log_path = self.log_path
        if self.context.is_main:
            atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
            # the log and the curve say what the checkpoint holds: not the lost iterations of a
            # killed run, nor a validation whose checkpoint could not be saved
            loop.keep_log_until(log_path, self.state.iteration)
            if resumed or (out / "val_curve.json").exists():
                atomic_write_json(out / "val_curve.json", self.state.val_curve)

        def log(record: dict) -> None:
            if self.context.is_main:
                with open(log_path, "a") as stream:
                    stream.write(json.dumps(record) + "\n")

        if resumed and self.context.is_main:
            print(f"resuming {out} at epoch {self.state.epoch + 1} (iteration {self.state.iteration})")
        wall_started = time.time()
        report = None
        for epoch in range(self.state.epoch, config.optim.epochs):
            self.train_epoch(epoch, log)
            self.state.epoch = epoch + 1
            last = epoch + 1 == config.optim.epochs
            if last or (config.run.val_every and (epoch + 1) % config.run.val_every == 0):
                report = self.validate(epoch)
            self.save()
            if self.context.is_main and self.state.val_curve:
                atomic_write_json(out / "val_curve.json", self.state.val_curve)
            distributed.barrier(self.context)
        if report is None:  # resumed after the last epoch: evaluate again for the final report
            report = self.evaluate()
        if self.context.is_main:
            self.finish(report, time.time() - wall_started)
        return report

    def finish(self, report: dict, wall_seconds: float) -> None:
        out = self.out
        inference = plain_batchnorm(self.model).state_dict()
        save_checkpoint(
            {"format": MODEL_FORMAT, "config": to_dict(self.config), "classes": self.classes, "model": inference},
            out / "model.pt",
        )
        # again here: a run resumed after its last epoch (Snakemake deleted the outputs of the
        # killed job) validates no more, and the curve lives on in the checkpoint
        atomic_write_json(out / "val_curve.json", self.state.val_curve)
        metrics = {key: value for key, value in report.items() if key not in ("predictions", "predict_seconds")}
        split = self.config.data.val[0].split(":")[-1] if self.config.data.format == "voc" else "val"
        write_results(report["predictions"], self.val_data, out / "predictions", split=split)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(
            out / "run.json",
            {
                **loop.run_record(self, wall_seconds, vars(self.state)),
                "classes": self.classes,
                "train_images": len(self.train_data),
                "val_images": len(self.val_data),
                "iterations": self.state.iteration,
                "batchnorm_layers": sorted(
                    {type(m).__name__ for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
                ),
                "amp": self.use_amp,
                # the share of training time spent waiting for the data loader's next batch
                "data_wait_share": self.state.data_seconds / self.state.train_seconds
                if self.state.train_seconds
                else None,
                "peak_memory_bytes": torch.cuda.max_memory_allocated(self.context.device)
                if self.context.device.type == "cuda"
                else None,
                "inference_images_per_second": len(self.val_data) / report["predict_seconds"],
                "metric": {"name": report["metric_name"], "value": report["value"]},
                "anchors": self.model.anchors.tolist() if hasattr(self.model, "anchors") else None,
                "pretrained_sha256": self.pretrained_sha256,
                **environment(self.context.device),
            },
        )


def train(config: TrainConfig, out: str | Path, *, progress: bool = True, restart: bool = False) -> dict:
    """Train (or resume) one run; returns the final validation report. ``restart`` sets the
    run folder's checkpoint aside and trains from scratch."""
    context = distributed.setup(config.run.device)
    try:
        return Trainer(config, Path(out), context, progress=progress).fit(restart=restart)
    finally:
        distributed.teardown()
