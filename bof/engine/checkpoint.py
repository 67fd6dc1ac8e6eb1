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


def rng_states(context: distributed.Context) -> list[dict]:
    """Every process's random state, in rank order, gathered on every process (all must call it).

    Faster R-CNN's samplers draw from the global generators: the CPU one, and on a GPU the
    device's (``torch.randperm(..., device=cuda)``); each rank draws for its own images, so an
    exact resume needs each rank's own state back."""
    state = {"cpu": torch.get_rng_state()}
    if context.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(context.device)
    return distributed.gather_objects(context, [state])


def restore_rng(saved: dict, context: distributed.Context) -> None:
    """Put back this rank's random state from a checkpoint of ``rng_states`` (or the CPU state
    alone, as checkpoints before it held). Resuming on another number of processes cannot be
    exact; the ranks then take rank 0's state and a note says so."""
    states = saved.get("rng")
    if states is None:
        torch.set_rng_state(saved["torch_rng"])
        return
    if len(states) != context.world_size and context.is_main:
        print(
            f"note: the checkpoint was written by {len(states)} processes, this run has {context.world_size}:"
            " the resumed run draws other random numbers than an uninterrupted one"
        )
    state = states[context.rank] if len(states) == context.world_size else states[0]
    torch.set_rng_state(state["cpu"])
    if context.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], context.device)
