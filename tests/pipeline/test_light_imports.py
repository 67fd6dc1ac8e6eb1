"""Parsing the pipeline and asking how far it is load no torch (issue 23): configuration and the
job matrix are plain dataclasses and YAML, so the Snakefile and `bof status` start in a fraction
of a second; `python -X importtime` lists every module a process imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "cv2", "matplotlib")


def imported(command: list[str], cwd: Path) -> set[str]:
    """The top-level packages a ``python -X importtime`` run of ``command`` imported."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines[1:]}


def test_snakemake_dry_run_imports_no_torch():
    modules = imported(["-m", "snakemake", "-n", "--quiet", "--cores", "1", "--configfile", "config/smoke.yaml"], ROOT)
    assert "bof" in modules and "snakemake" in modules
    assert not modules & set(HEAVY)


def test_bof_status_imports_no_torch(tmp_path):
    modules = imported(["-m", "bof", "status", "--preset", str(ROOT / "config" / "smoke.yaml")], tmp_path)
    assert "bof" in modules and not modules & set(HEAVY)
