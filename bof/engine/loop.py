"""What the two training loops share (backbone pretraining, detector training): the epoch's
order of samples, the optimizer step under AMP, reading the losses back from the device, the
log a resume trims, one checkpoint format, and the common part of ``run.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from bof.config import to_dict
from bof.engine import distributed
from bof.engine.checkpoint import restore_rng
from bof.errors import BofError
from bof.io import atomic_write_text


class NonFiniteLossError(BofError):
    """A loss term became NaN or infinite; names the iteration and the last good checkpoint."""


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
    return torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


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
CHECKPOINT_FORMAT = "bof-checkpoint-2"


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
    """``saved`` in today's format: a checkpoint of bof's earlier formats (training's
    ``bof-train-checkpoint-1``; pretraining's, without a format key, its progress under ``state``)
    is read as one; another kind's, or anything else, is refused in one line naming the file."""
    found = saved.get("format")
    if found == "bof-train-checkpoint-1" and kind == "train":
        return {**saved, "format": CHECKPOINT_FORMAT, "kind": "train"}
    if found is None and kind == "pretrain" and "state" in saved:
        return {**saved, "format": CHECKPOINT_FORMAT, "kind": "pretrain", "progress": saved["state"]}
    if found != CHECKPOINT_FORMAT:
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


def run_record(run, wall_seconds: float, progress: dict) -> dict:
    """The part of ``run.json`` both loops write for ``run``: its config and seed, its distributed
    path (under torchrun, one process included: a process group and DDP, as on 8 GPUs), its time
    and its speed over the training steps (``progress``: images_seen, train_seconds)."""
    train_seconds = progress["train_seconds"]
    return {
        "config": to_dict(run.config),
        "seed": run.config.seed,
        "world_size": run.context.world_size,
        "process_group": torch.distributed.get_backend() if run.context.distributed else None,
        "ddp": isinstance(run.network, DistributedDataParallel),
        "wall_seconds": wall_seconds,
        "train_seconds": train_seconds,
        "images_per_second": progress["images_seen"] / train_seconds if train_seconds else None,
    }
