"""Explicit random streams: every random draw of a trick comes from a ``torch.Generator``
derived from (seed, epoch, sample index), never from global state, so a sample's
augmentation is the same in any worker process and on any rank."""

from __future__ import annotations

import numpy as np
import torch


def generator_for(*key: int) -> torch.Generator:
    """A generator seeded from an integer key such as (seed, epoch, index)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] (both inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def bernoulli(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator)) < p


def seed_from(generator: torch.Generator | None = None) -> int:
    """A seed drawn from ``generator``'s stream, or from torch's global one without it."""
    return int(torch.randint(0, 2**62, (), generator=generator))


def beta(generator: torch.Generator, a: float, b: float) -> float:
    """A Beta(a, b) draw. torch's Beta sampler takes no generator, so numpy's sampler is
    seeded from this generator's stream instead (still a pure function of its state)."""
    return float(np.random.default_rng(seed_from(generator)).beta(a, b))
