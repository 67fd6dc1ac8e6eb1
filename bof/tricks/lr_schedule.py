"""Learning-rate schedules with linear warmup (§3.4, Figure 6a), per iteration.

``lr_at`` is a pure function of the iteration, used both by the optimizer (through
``torch.optim.lr_scheduler.LambdaLR``) and by the Figure 6a plot, so the figure shows
exactly what training ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from bof.errors import ConfigError

__all__ = ["build_scheduler", "lr_at"]

Mode = Literal["cosine", "step"]


def lr_at(
    t: int,
    *,
    base_lr: float,
    iters_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0,
    mode: Mode = "cosine",
    step_epochs: Sequence[float] = (),
    step_factor: float = 0.1,
    warmup_start: float = 0.0,
) -> float:
    """Learning rate at iteration ``t`` (0-based).

    With ``W = warmup_epochs * iters_per_epoch`` and ``T = epochs * iters_per_epoch``:
    ``base * (s + (1 - s) t / W)`` while ``t < W``, ``s = warmup_start`` (0 for GluonCV's
    YOLOv3, 1/3 for its Faster R-CNN); then cosine ``base * (1 + cos(pi (t - W) / (T - W))) / 2``,
    or step ``base * step_factor ** k`` with k the number of ``step_epochs`` reached.
    """
    if mode not in ("cosine", "step"):
        raise ConfigError(f"lr mode must be 'cosine' or 'step', got {mode!r}")
    warmup = warmup_epochs * iters_per_epoch
    total = epochs * iters_per_epoch
    if t < warmup:
        return base_lr * (warmup_start + (1 - warmup_start) * t / warmup)
    if mode == "cosine":
        progress = min(1.0, (t - warmup) / max(total - warmup, 1))
        return base_lr * (1 + math.cos(math.pi * progress)) / 2
    reached = sum(t >= epoch * iters_per_epoch for epoch in step_epochs)
    return base_lr * step_factor**reached


def build_scheduler(optimizer: torch.optim.Optimizer, **schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration ``LambdaLR`` whose factor is ``lr_at(t, base_lr=1, **schedule)``;
    call ``scheduler.step()`` after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_at(t, base_lr=1.0, **schedule))
