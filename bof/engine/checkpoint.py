"""Checkpoints written atomically (temporary file, fsync, rename) and read with ``weights_only=True``.

A kill while saving leaves the previous checkpoint intact, and a crafted file cannot run
code when loaded: only tensors, containers and primitives are accepted.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path

import torch

from bof.engine import distributed
from bof.errors import BofError
from bof.io import atomic_write


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: which backbone a run started from, whatever its path."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def save_checkpoint(state: dict, path: str | Path) -> None:
    atomic_write(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: str | Path) -> dict:
    """Load safely onto the CPU; a truncated, foreign or code-carrying file is a clear error."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BofError(f"{path}: checkpoint is missing") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BofError(f"{path}: not a loadable checkpoint ({first_line})") from None
    if not isinstance(state, dict):
        raise BofError(f"{path}: not a bof checkpoint (top level is {type(state).__name__})")
    return state


def set_aside(path: str | Path) -> Path:
    """Rename a checkpoint that no longer belongs to its run folder (``checkpoint.pt`` ->
    ``checkpoint.stale-<time>.pt``), so that a new run starts there and nothing is lost."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.stale-{stamp}{path.suffix}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.stale-{stamp}-{counter}{path.suffix}")
        counter += 1
    path.rename(target)
    return target


def start_over(path: Path, reason: str, context: distributed.Context) -> None:
    """A run folder's checkpoint is not this run's: the main process sets it aside (nothing is
    lost) and says why; every process waits, then the run starts from scratch."""
    if context.is_main:
        kept = set_aside(path)
        print(f"starting {path.parent} over ({reason}); the old checkpoint is kept as {kept.name}")
    distributed.barrier(context)
