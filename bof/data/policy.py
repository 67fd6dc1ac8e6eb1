"""What a loader does with a bad sample: stop (``strict``) or skip it and say so (``skip``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from bof.errors import DatasetError

OnError = Literal["strict", "skip"]
CheckImages = Literal["none", "header", "decode"]
log = logging.getLogger("bof.data")


@dataclass(frozen=True)
class SkippedSample:
    path: str
    problem: str


class SkipLog:
    """Collects the samples a ``skip`` policy dropped; ``strict`` re-raises instead."""

    def __init__(self, on_error: OnError):
        if on_error not in ("strict", "skip"):
            raise ValueError(f"on_error must be 'strict' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.skipped: list[SkippedSample] = []

    def record(self, error: DatasetError) -> None:
        if self.on_error == "strict":
            raise error
        self.skipped.append(SkippedSample(error.path, error.problem))

    def report(self, dataset_name: str, total: int) -> None:
        """Log one warning with the count and the first few reasons; never silent."""
        if not self.skipped:
            return
        examples = "; ".join(f"{s.path}: {s.problem}" for s in self.skipped[:3])
        more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
        log.warning("%s: skipped %d of %d samples: %s%s", dataset_name, len(self.skipped), total, examples, more)


def check_policy_args(check_images: str) -> None:
    if check_images not in ("none", "header", "decode"):
        raise ValueError(f"check_images must be 'none', 'header' or 'decode', got {check_images!r}")
