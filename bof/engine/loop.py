"""The one training loop (`TrainingLoop`) that backbone pretraining and detector training run,
and its parts: the epoch's order of samples, the optimizer step under AMP, reading the losses
back from the device, the log a resume trims, one checkpoint format, and the common part of
``run.json``. What differs between the two (classification or detection losses, evaluation,
what else the run folder gets) is passed in by `Pretrainer` and `Trainer`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bof.config import to_dict
from bof.engine import distributed
from bof.engine.checkpoint import RunCheckpoints, restore_rng, rng_states
from bof.engine.lock import hold_run_folder
from bof.errors import BofError
from bof.io import atomic_write_text


class NonFiniteLossError(BofError):
    """A loss term became NaN or infinite; names the iteration and the last good checkpoint."""


# The generators of an epoch's sample order and of pretraining's data-loader workers: one stream
# each per (seed, epoch). Kept as first written: `tricks.random.generator_for` would draw other
# numbers and change every shipped result.
SAMPLE_ORDER, PRETRAIN_WORKERS = 100_003, 7919


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * stream + epoch)


def epoch_sampler(dataset, context: distributed.Context, seed: int, epoch: int) -> torch.utils.data.Sampler:
    """This process's order of ``dataset`` in ``epoch``: its shard of a seeded DistributedSampler
    (drop_last: every process steps alike) under a process group, else a RandomSampler whose
    generator is seeded from (seed, epoch)."""
    if context.distributed:
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return sampler
    return torch.utils.data.RandomSampler(dataset, generator=epoch_generator(seed, epoch, SAMPLE_ORDER))


def optimizer_step(loss: torch.Tensor, optimizer, scheduler, scaler: torch.amp.GradScaler) -> None:
    """Backward through the scaler, a step (which the scaler skips when a gradient is not finite),
    and the per-iteration learning rate."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def keep_log_until(path: Path, iteration: int) -> None:
    """Drop the records of iterations after ``iteration`` from a ``train_log.jsonl`` (and a line
    cut by a kill), so that a resumed run's log holds every iteration once."""
    if not path.exists():
        return
    kept, changed = [], False
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            changed = True
            continue
        if isinstance(record, dict) and record.get("iteration", 0) <= iteration:
            kept.append(line)
        else:
            changed = True
    if changed:
        atomic_write_text(path, "".join(line + "\n" for line in kept))


class LossReader:
    """An epoch's loss terms, read back from the device in one sync when asked (every log_every
    steps, the epoch's end), not at every step; with ``each_step`` (no GradScaler to skip a
    non-finite step before it reaches the weights) every step is checked as it comes. A
    non-finite term raises `NonFiniteLossError` naming its iteration and the last good checkpoint."""

    def __init__(self, run, epoch: int, saved_epoch: int):
        """For ``run`` (its scaler and checkpoints) in ``epoch``; ``saved_epoch``: the epochs its
        last checkpoint holds (0: none yet)."""
        self.epoch, self.each_step = epoch, not run.scaler.is_enabled()
        self.last_checkpoint = f"{run.checkpoints.latest} (after epoch {saved_epoch})" if saved_epoch else "none yet"
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []
        self.first = 0

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, iteration: int, losses: dict[str, torch.Tensor]) -> None:
        """The terms of ``iteration``, kept on the device."""
        self.names = list(losses)
        terms = torch.stack([value.detach().float() for value in losses.values()])
        if self.each_step:
            self._check(terms[None].tolist(), iteration)
        if not self.pending:
            self.first = iteration
        self.pending.append(terms)

    def read(self) -> list[dict[str, float]]:
        """The terms of the steps added since the last read, one dict a step."""
        if not self.pending:
            return []
        rows = torch.stack(self.pending).tolist()
        self._check(rows, self.first)
        self.pending = []
        return [dict(zip(self.names, row, strict=True)) for row in rows]

    def _check(self, rows: list[list[float]], first: int) -> None:
        for step, row in enumerate(rows):
            bad = {name: value for name, value in zip(self.names, row, strict=True) if not math.isfinite(value)}
            if bad:
                raise NonFiniteLossError(
                    f"iteration {first + step} (epoch {self.epoch + 1}): loss term "
                    + ", ".join(f"'{name}' is {value}" for name, value in bad.items())
                    + f"; training stopped, last good checkpoint: {self.last_checkpoint}"
                )


# One checkpoint format for both loops; a version key, and what each kind adds beside the
# shared part (training: its classes and backbone's hash). Earlier formats still resume.
CHECKPOINT_FORMAT = "bof-checkpoint-3"


def checkpoint(kind: str, run, rng, progress: dict, **extra) -> dict:
    """What ``checkpoint.pt`` holds for ``run`` (a `Trainer` or `Pretrainer`: its config, model,
    optimizer, scheduler and scaler): enough to continue exactly where it stopped."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": to_dict(run.config),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng,
        "progress": progress,
        **extra,
    }


def current_format(saved: dict, kind: str, path) -> dict:
    """``saved`` in today's format. bof's earlier formats are read as one: ``bof-checkpoint-2``
    (either kind; the curve under ``val_curve`` or ``top1``), training's ``bof-train-checkpoint-1``,
    pretraining's without a format key (its progress under ``state``). Another kind's, or anything
    else, is refused in one line naming the file."""
    found = saved.get("format")
    if found == "bof-train-checkpoint-1" and kind == "train":
        saved = {**saved, "format": "bof-checkpoint-2", "kind": "train"}
    elif found is None and kind == "pretrain" and "state" in saved:
        saved = {**saved, "format": "bof-checkpoint-2", "kind": "pretrain", "progress": saved["state"]}
    if saved.get("format") == "bof-checkpoint-2" and isinstance(saved.get("progress"), dict):
        progress = {
            ("curve" if key in ("val_curve", "top1") else key): value for key, value in saved["progress"].items()
        }
        saved = {**saved, "format": CHECKPOINT_FORMAT, "progress": progress}
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise BofError(f"{path}: not a bof {kind} checkpoint (format {found!r})")
    if saved.get("kind") != kind:
        raise BofError(f"{path}: a {saved.get('kind')} checkpoint, not a {kind} one")
    return saved


def restore(saved: dict, run) -> None:
    """``run``'s weights, optimizer, schedule, loss scale and every process's random state from ``saved``."""
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"]:  # empty when written without AMP (on a CPU): a GPU resume starts a fresh scale
        run.scaler.load_state_dict(saved["scaler"])
    restore_rng(saved, run.context)


def run_record(run: TrainingLoop, wall_seconds: float) -> dict:
    """The part of ``run.json`` both trainings write for ``run``: its config and seed, its
    distributed path (under torchrun, one process included: a process group and DDP, as on 8
    GPUs), its time, its speed over the training steps and the share of it spent waiting for data."""
    progress = run.state
    train_seconds = progress.train_seconds
    return {
        "config": to_dict(run.config),
        "seed": run.config.seed,
        "world_size": run.context.world_size,
        "process_group": torch.distributed.get_backend() if run.context.distributed else None,
        "ddp": isinstance(run.network, DistributedDataParallel),
        "wall_seconds": wall_seconds,
        "train_seconds": train_seconds,
        "images_per_second": progress.images_seen / train_seconds if train_seconds else None,
        "data_wait_share": progress.data_seconds / train_seconds if train_seconds else None,
        "amp": run.use_amp,
    }


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint, so a resume continues from it."""

    epoch: int = 0  # the next epoch to run
    iteration: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    data_seconds: float = 0.0  # of train_seconds, waiting for the data loader's next batch
    curve: list[dict] = field(default_factory=list)  # a point each validated epoch

    @classmethod
    def read(cls, progress, path) -> Progress:
        """A checkpoint's ``progress`` (today's format), or one line naming the file when it is not one."""
        names = [f.name for f in fields(cls)]
        if not isinstance(progress, dict) or not set(progress) <= set(names) or "epoch" not in progress:
            found = sorted(progress) if isinstance(progress, dict) else type(progress).__name__
            raise BofError(f"{path}: the checkpoint's progress holds {found}, expected {names}")
        return cls(**progress)


class TrainingLoop:
    """The epoch loop of both trainings: resume, epochs of optimizer steps, validation, a
    checkpoint an epoch, the final files. `Trainer` (detectors) and `Pretrainer` (backbones) set
    up the model, optimizer and data, and say what differs: ``loader``, ``losses``, ``validates``,
    ``validate``, ``conflict``, ``final_report`` and ``finish`` (and ``log_losses`` to keep the
    loss records)."""

    kind = ""  # the checkpoint's kind and the command: "train" or "pretrain"
    log_every = 50  # steps between reads of the losses (under AMP; every step without)

    def __init__(self, config, out: Path, context: distributed.Context, *, progress: bool = True):
        self.config, self.out, self.context, self.show_progress = config, Path(out), context, progress
        self.checkpoints = RunCheckpoints(self.out, context)
        self.log_path = self.out / "train_log.jsonl"
        self.state = Progress()
        torch.manual_seed(config.seed)

    def place(self, model: nn.Module) -> None:
        """``model`` on the run's device (channels-last on a GPU), under DDP with a process group."""
        context = self.context
        self.model = model.to(context.device)
        if context.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = self.model
        if context.distributed:
            device_ids = [context.local_rank] if context.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)

    def optimize_with(self, optimizer, scheduler, *, amp: bool) -> None:
        """The optimizer and its per-iteration schedule; AMP (fp16 autocast, a GradScaler) on CUDA only."""
        self.optimizer, self.scheduler = optimizer, scheduler
        self.use_amp = amp and self.context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.context.device.type, enabled=self.use_amp)

    # --- what a kind of training says ---

    epochs: int
    iters_per_epoch: int

    def loader(self, epoch: int) -> Iterable:
        raise NotImplementedError

    def losses(self, batch, epoch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """A batch's named loss terms (logged), the loss to step on, and its number of images."""
        raise NotImplementedError

    def validates(self, epoch: int) -> bool:
        return True

    def validate(self, epoch: int) -> dict:
        """Evaluate after ``epoch``; a point of the curve (the main process appends it)."""
        raise NotImplementedError

    def final_report(self) -> dict:
        """The report of a run resumed after its last epoch (it validates no more)."""
        raise NotImplementedError

    def conflict(self, saved: dict) -> str | None:
        """Why the folder's checkpoint cannot continue this run (set aside, the run starts over), or None."""
        return None if saved["config"] == to_dict(self.config) else "it holds a run of another config"

    def checkpoint_extra(self) -> dict:
        return {}

    def log_losses(self, rows: list[dict[str, float]], epoch: int, bar) -> None:
        """The loss terms of the steps since the last read (checked finite already)."""

    def started(self, resumed: bool) -> None:
        """After the resume, before the first epoch."""

    def after_save(self) -> None:
        """After an epoch's checkpoint."""

    def finish(self, report: dict, wall_seconds: float) -> None:
        raise NotImplementedError

    # --- the loop ---

    def fit(self, *, restart: bool = False) -> dict:
        """Hold the run folder (main process) and train the remaining epochs; ``restart`` sets
        the folder's checkpoint aside first."""
        with hold_run_folder(self.out, f"bof {self.kind}", self.context):
            resumed = self.resume(restart=restart)
            self.started(resumed)
            wall_started = time.time()
            report = None
            for epoch in range(self.state.epoch, self.epochs):
                self.train_epoch(epoch)
                self.state.epoch = epoch + 1
                if epoch + 1 == self.epochs or self.validates(epoch):
                    report = self.validate(epoch)
                self.save()
                self.after_save()
                distributed.barrier(self.context)
            if report is None:
                report = self.final_report()
            if self.context.is_main:
                self.finish(report, time.time() - wall_started)
            return report

    def resume(self, *, restart: bool = False) -> bool:
        """Continue from the folder's newest intact checkpoint. One of another config (the preset
        changed, Snakemake reruns the job) is set aside, not lost, and the run starts over; with
        ``restart`` the checkpoints are set aside unread (a damaged one cannot block it). The log
        keeps what the checkpoint holds: not the lost iterations of a killed run."""
        saved = None
        if restart:
            self.checkpoints.start_over("--restart", with_them=(self.log_path,))
        else:
            saved = self.checkpoints.load()
        if saved is not None:
            saved = current_format(saved, self.kind, self.checkpoints.loaded_from)
            reason = self.conflict(saved)
            if reason:
                self.checkpoints.start_over(reason, with_them=(self.log_path,))
                saved = None
        if saved is not None:  # the random state too: the crops of `workers: 0` draw from it
            restore(saved, self)
            self.state = Progress.read(saved.get("progress"), self.checkpoints.loaded_from)
        if self.context.is_main:
            keep_log_until(self.log_path, self.state.iteration)
        return saved is not None

    def train_epoch(self, epoch: int) -> None:
        self.network.train()
        bar = tqdm(
            self.loader(epoch),
            desc=f"{self.kind} {epoch + 1}/{self.epochs}",
            unit="it",
            disable=not (self.show_progress and self.context.is_main),
            leave=False,
        )
        losses = LossReader(self, epoch, self.state.epoch)
        started = waiting = time.perf_counter()
        for batch in bar:
            self.state.data_seconds += time.perf_counter() - waiting
            terms, loss, images = self.losses(batch, epoch)
            losses.add(self.state.iteration, terms)
            optimizer_step(loss, self.optimizer, self.scheduler, self.scaler)
            self.state.iteration += 1
            self.state.images_seen += images * self.context.world_size
            if len(losses) == self.log_every:
                self.log_losses(losses.read(), epoch, bar)
            waiting = time.perf_counter()
        if len(losses):  # before the epoch's checkpoint
            self.log_losses(losses.read(), epoch, bar)
        self.state.train_seconds += time.perf_counter() - started

    def save(self) -> None:
        rng = rng_states(self.context)  # every rank's, gathered by all of them
        if self.context.is_main:
            saved = checkpoint(self.kind, self, rng, vars(self.state), **self.checkpoint_extra())
            self.checkpoints.save(saved)
