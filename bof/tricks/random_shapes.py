"""Random training shapes for single-stage detectors (§3.6).

Every ``interval`` iterations a new square input size is drawn from ``sizes`` (multiples
of 32: 320..608 for YOLOv3 at paper scale). The draw is a pure function of
(seed, iteration // interval), so every DDP rank and every data-loader worker agrees on it
without communicating.
"""

from __future__ import annotations

from collections.abc import Sequence

from bof.config import STRIDE
from bof.errors import ConfigError
from bof.tricks.random import generator_for, randint

__all__ = ["shape_at", "shape_range"]


def shape_range(low: int, high: int, step: int = STRIDE) -> tuple[int, ...]:
    """Sizes ``low, low + step, ..., high``; both ends must be multiples of ``step``."""
    if low % step or high % step or low <= 0 or high < low:
        raise ConfigError(f"random shapes need multiples of {step} with 0 < low <= high, got {low}..{high}")
    return tuple(range(low, high + 1, step))


def shape_at(iteration: int, *, sizes: Sequence[int], interval: int = 10, seed: int = 0) -> int:
    """The input size for ``iteration``: constant within each block of ``interval`` iterations."""
    if interval < 1:
        raise ConfigError(f"random shape interval must be >= 1, got {interval}")
    if not sizes:
        raise ConfigError("random shapes need at least one size")
    if len(sizes) == 1:
        return int(sizes[0])
    return int(sizes[randint(generator_for(seed, 0x5A4E, iteration // interval), 0, len(sizes) - 1)])
