"""Writing files so that a reader never sees a half-written one: temporary file, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bof.errors import BofError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with what ``write(stream)`` writes, atomically: a temporary file in the
    same folder, fsync, rename. The file gets the mode ``open(path, "w")`` would give a new file
    (0644 under umask 022), not mkstemp's 0600. On any failure (a full disk included) the old
    file is untouched and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.chmod(temporary, 0o666 & ~_umask())
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = _os_error(error)
        if cause is not None:  # a full disk, a read-only folder...: say so, not where it surfaced
            raise BofError(f"{path}: could not write ({cause.strerror or cause})") from error
        raise


def _umask() -> int:
    """The process's umask. Linux shows it in /proc/self/status; elsewhere it can only be read by
    setting it, so it is set back at once (another thread creating a file in between would get 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind ``error``, also when a library re-raised it as something else
    (torch.save turns a full disk into a RuntimeError of its zip writer)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: object, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")
