"""One writer per run folder: a POSIX lock (``lockf``) on ``<folder>/.lock``.

Two trainings writing one folder would interleave their logs and the last would silently win.
The kernel drops the lock when its process ends, however it ends, and a ``lockf`` lock is not
inherited by forked data-loader workers, so a killed run leaves none behind; the file only
says who holds it."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bof.engine import distributed
from bof.errors import BofError


@contextmanager
def hold_run_folder(folder: str | Path, command: str, context: distributed.Context | None = None) -> Iterator[None]:
    """Hold ``folder`` (created if needed) while the block runs, or refuse in one line naming the
    holder. Under ``torchrun`` the main process holds it and every process gets its answer."""
    folder = Path(folder)
    refusal, stream = None, None
    if context is None or context.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        stream = open(folder / ".lock", "a+")  # noqa: SIM115 (held across the yield, closed below)
        try:
            fcntl.lockf(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            stream.seek(0)
            holder = stream.read().strip() or "another process"
            stream.close()
            refusal = (
                f"{folder}: {holder} is writing this run folder; wait for it to end or stop it"
                " (two writers would mix their files)"
            )
    if context is not None:
        refusal = distributed.gather_objects(context, [refusal])[0]
    if refusal is not None:
        raise BofError(refusal)
    try:
        if stream is not None:
            stream.seek(0)
            stream.truncate()
            stream.write(f"{command} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            stream.flush()
        yield
    finally:
        if stream is not None:
            stream.close()  # releases the lock
