"""Checkpoints written atomically (temporary file, fsync, rename), verified before they are
trusted, and read with ``weights_only=True``.

A kill while saving leaves the previous checkpoint intact; a file whose bytes changed after it
was written (a flipped bit, a cut copy) is refused, because ``torch.save``'s zip archive keeps
a CRC-32 of every record and ``torch.load`` does not check them; a crafted file cannot run code
when loaded: only tensors, containers and primitives are accepted. A run folder keeps two
generations (:class:`RunCheckpoints`), so a damaged latest one falls back to the one before.
"""

from __future__ import annotations

import pickle
import re
import time
import zipfile
import zlib
from pathlib import Path

import torch

from bof.engine import distributed
from bof.errors import BofError
from bof.io import atomic_write

ZIP_MAGIC = b"PK\x03\x04"


class DamagedCheckpoint(BofError):
    """A checkpoint whose bytes are not those that were written (CRC-32 mismatch, cut archive)."""


def save_checkpoint(state: dict, path: str | Path, *, previous: str | Path | None = None) -> None:
    """Write ``state`` atomically; with ``previous``, the file it replaces is kept under that name."""
    atomic_write(path, lambda stream: torch.save(state, stream), keep_previous=previous)


def verify_checkpoint(path: Path) -> None:
    """Check every record of the archive against the CRC-32 ``torch.save`` stored for it
    (about 1 GB/s: a second for a large detector's checkpoint)."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(len(ZIP_MAGIC))
        if magic != ZIP_MAGIC:
            raise BofError(f"{path}: not a checkpoint of torch.save (no zip archive), its integrity cannot be checked")
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise BofError(f"{path}: checkpoint is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as error:
        raise DamagedCheckpoint(f"{path}: damaged checkpoint (its zip archive is cut or broken: {error})") from None
    if bad is not None:
        raise DamagedCheckpoint(
            f"{path}: damaged checkpoint (record {bad!r} does not match the CRC-32 written with it)"
        )


def load_checkpoint(path: str | Path) -> dict:
    """Verify, then load safely onto the CPU; a damaged, foreign or code-carrying file is a clear error."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False: not advice to give about an untrusted file
        found = re.search(r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise BofError(
            f"{path}: not a loadable checkpoint: refused, it holds Python objects other than tensors and"
            f" plain data{what}, which could run code when loaded"
        ) from None
    except (RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BofError(f"{path}: not a loadable checkpoint ({first_line})") from None
    if not isinstance(state, dict):
        raise BofError(f"{path}: not a bof checkpoint (top level is {type(state).__name__})")
    return state


def set_aside(path: str | Path, label: str = "stale") -> Path:
    """Rename a checkpoint that no longer belongs to its run folder (``checkpoint.pt`` ->
    ``checkpoint.<label>-<time>.pt``), so that a new run starts there and nothing is lost."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.{label}-{stamp}{path.suffix}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.{label}-{stamp}-{counter}{path.suffix}")
        counter += 1
    path.rename(target)
    return target


class RunCheckpoints:
    """A run folder's last two checkpoints, ``checkpoint.pt`` and ``checkpoint.prev.pt``.

    Saving moves the latest to ``.prev`` only once the new one is completely written; loading
    takes the latest intact generation and sets a damaged one aside (kept, renamed), so the
    next save cannot push the good generation out."""

    def __init__(self, folder: str | Path, context: distributed.Context):
        self.latest = Path(folder) / "checkpoint.pt"
        self.previous = Path(folder) / "checkpoint.prev.pt"
        self.loaded_from: Path | None = None  # the generation load() read (an error names that file)
        self.context = context

    def existing(self) -> list[Path]:
        return [path for path in (self.latest, self.previous) if path.exists()]

    def save(self, state: dict) -> None:
        save_checkpoint(state, self.latest, previous=self.previous)

    def load(self) -> dict | None:
        """The newest intact generation (None when the folder has none). Every process calls it."""
        paths = self.existing()
        damaged: list[tuple[Path, str]] = []
        saved = None
        for path in paths:
            try:
                saved = load_checkpoint(path)
                self.loaded_from = path
                break
            except BofError as error:  # damaged, or refused: either way not a generation to trust
                damaged.append((path, str(error)))
        if paths and saved is None:
            raise BofError(
                "; ".join(problem for _, problem in damaged)
                + ": no intact checkpoint is left; `--restart` (the pipeline: `--config retrain=true`)"
                " sets them aside and trains from scratch"
            )
        distributed.barrier(self.context)  # every process has read before one is renamed
        if damaged and self.context.is_main:
            for path, problem in damaged:
                kept = set_aside(path, "damaged")
                print(
                    f"{problem}; kept as {kept.name}; resuming from {paths[len(damaged)].name}, the generation before"
                )
        distributed.barrier(self.context)
        return saved

    def start_over(self, reason: str, *, with_them: tuple[Path, ...] = ()) -> None:
        """The folder's checkpoints are not this run's: the main process sets them aside with the
        files ``with_them`` (their run's log; nothing is lost, nothing is read) and says why;
        every process waits, then the run starts from scratch."""
        if self.context.is_main:
            kept = [set_aside(path) for path in self.existing()]
            if kept:
                for path in (path for path in with_them if path.exists()):
                    set_aside(path)
            if kept:
                names = " and ".join(path.name for path in kept)
                print(f"starting {self.latest.parent} over ({reason}); the old checkpoints are kept as {names}")
        distributed.barrier(self.context)


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
