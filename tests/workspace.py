"""A throwaway copy of the project (its git-tracked and untracked-but-not-ignored files) in
its own git repository, so pipeline tests can run Snakemake, DVC and SLURM on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def environment(**extra: str) -> dict[str, str]:
    """PATH with this interpreter's bin first (bof, snakemake, dvc) and the copy's sources
    importable ahead of the installed package."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}


def run(
    command: list[str], cwd: Path, *, timeout: int = 1800, check: bool = True, **extra: str
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=cwd, env=environment(PYTHONPATH=str(cwd), **extra), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def make_workspace(target: Path, preset: str = "smoke") -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    )
    for name in files:
        source = ROOT / name
        if name == "dvc.lock" and name not in tracked:
            continue  # a local run's record, which this repository does not track (README: DVC)
        if source.is_file() and not name.startswith(("results/", "data/")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / "results").mkdir(exist_ok=True)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workspace"],
    ):
        run(command, target)
    return target


def link_venv(clone: Path) -> Path:
    """Give ``clone`` a ``.venv`` that is this interpreter's (its bin and lib linked, its own
    install stamp), so `make` targets that depend on `setup` run there as written, installing
    nothing."""
    venv = clone / ".venv"
    venv.mkdir()
    prefix = Path(sys.prefix)
    for name in ("bin", "lib"):
        (venv / name).symlink_to(prefix / name, target_is_directory=True)
    shutil.copy2(prefix / "pyvenv.cfg", venv / "pyvenv.cfg")
    os.utime(clone / "pyproject.toml", (0, 0))
    (venv / ".bof-installed").touch()  # newer than pyproject.toml: `make setup` has nothing to do
    return venv
