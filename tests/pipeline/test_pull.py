"""`make pull` where there is nothing to pull. This repository tracks no dvc.lock and names no DVC
remote (README: DVC), so in a clone of it `make pull` must stop before pulling, say what is
missing, and change nothing. (Pulling from a fork that has both: tests/pipeline/test_dvc.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from workspace import ROOT, link_venv, make_workspace, run

LOCK = "schema: '2.0'\nstages:\n  report@smoke:\n    cmd: snakemake results/smoke/REPORT.md\n"


def test_this_repository_tracks_no_dvc_lock_and_names_no_remote():
    tracked = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout == ""
    assert "remote" not in (ROOT / ".dvc" / "config").read_text()


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` but .git and .venv, with its time and size."""
    found = {}
    for parent, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if name not in {".git", ".venv"}]
        for name in names:
            stat = (Path(parent) / name).stat()
            found[os.path.relpath(Path(parent) / name, folder)] = (stat.st_mtime_ns, stat.st_size)
    return found


@pytest.mark.parametrize(("remote", "lock"), [(False, False), (True, False), (False, True)])
def test_make_pull_without_remote_or_lock_says_what_is_missing_and_changes_nothing(tmp_path, remote, lock):
    work = make_workspace(tmp_path / "work")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(work), str(clone)], tmp_path)
    link_venv(clone)
    if remote:  # a remote, but no run recorded; written as `dvc remote add -d` writes it: in CI that
        # command's .dvc/tmp/btime once appeared after the snapshot below, as if make pull wrote it
        with open(clone / ".dvc" / "config", "a") as config:
            config.write(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {tmp_path / 'remote'}\n")
    if lock:  # a local run's record, but nowhere to pull from
        (clone / "dvc.lock").write_text(LOCK)
    status = run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], clone).stdout
    before = files(clone)

    result = run(["make", "pull", "PRESET=smoke"], clone, check=False)

    message = result.stderr
    assert result.returncode != 0
    assert "make pull: nothing to pull for PRESET=smoke, nothing changed" in message, message
    assert ("a default DVC remote" in message) is not remote, message
    assert ("a dvc.lock recording report@smoke" in message) is not lock, message
    assert "dvc pull" not in result.stdout  # stopped before DVC
    assert run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], clone).stdout == status
    assert files(clone) == before
