"""What produced a result: versions, git commit, device, machine and time. Written into every run.json."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torchvision

from bof import __version__


def git_state(folder: Path | None = None) -> dict:
    """The commit of ``folder``'s checkout and whether a tracked file differs from it. Untracked
    files do not count: the pipeline's own outputs (results/, data/, dvc.lock) are untracked while
    it runs, and they made every run of a clean clone "dirty"."""
    folder = folder or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=folder,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def machine() -> dict:
    """The CPU's model name, its core count and the memory: what a reader needs to compare a
    run's timings with their own (``platform.processor()`` is empty on Linux)."""
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        memory = None
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(), "memory_bytes": memory}


def environment(device: torch.device) -> dict:
    return {
        "versions": {
            "bof": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "git": git_state(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "host": platform.node(),
        "machine": machine(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
