"""Pipeline faults: Snakemake killed in the middle of the matrix and started again: finished jobs
are not rerun, unfinished ones resume from their checkpoints, and the results equal those of an
uninterrupted run. (A SLURM job cancelled with scancel: tests/faults/test_slurm_faults.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workspace import environment, make_workspace, run

from bof.pipeline import matrix

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke_pushed")]  # its session fixture runs once


def metrics(results: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(results)): json.loads(p.read_text())
        for p in sorted((results / "eval").rglob("*.json"))
        if "predictions" not in p.parts
    }


def finished_models(work: Path) -> list[Path]:
    """The model.pt of every training Snakemake's log reports finished: a job killed while
    writing its outputs has a model.pt but is incomplete, and is rightly rerun."""
    text = max((work / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime).read_text()
    outputs = {
        m.group(2): m.group(1).split(", ")
        for m in re.finditer(r"^\s+output: (.*)\n(?:\s+\w+: .*\n)*?\s+jobid: (\d+)$", text, re.M)
    }
    done = re.findall(r"^Finished jobid: (\d+) \(Rule: train\)", text, re.M)
    return [work / path for jobid in done for path in outputs[jobid] if path.endswith("model.pt")]


def test_killed_snakemake_resumes_and_matches_the_uninterrupted_run(smoke_pushed, tmp_path):
    _, reference, _ = smoke_pushed
    work = make_workspace(tmp_path / "work")
    # Tables 1 and 3 (9 trainings of both detectors, their data, anchors and backbones): a kill
    # among 9 trainings tests what one among the whole DAG's 19 does, in half the time
    preset = matrix.load_preset(work / "config" / "smoke.yaml")
    targets = sorted(
        {matrix.metric_path(preset, matrix.Job(c.detector, c.combo, 0), "voc07")
         for table in ("table1", "table3") for row in matrix.table_cells(preset, table) for c in row}
    )  # fmt: skip
    assert len(targets) == 9
    command = ["snakemake", *targets, "--cores", "2", "--configfile", "config/smoke.yaml"]
    process = subprocess.Popen(
        command,
        cwd=work,
        env=environment(PYTHONPATH=str(work)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = work / "results" / "smoke" / "runs"
    deadline = time.time() + 900
    while len(list(runs.rglob("model.pt"))) < 4 or not [
        c for c in runs.rglob("checkpoint.pt") if not (c.parent / "model.pt").exists()
    ]:
        assert process.poll() is None and time.time() < deadline, "the run finished before it could be interrupted"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and every job it started
    process.wait()
    finished = {p: p.stat().st_mtime for p in finished_models(work)}
    interrupted = [c.parent for c in runs.rglob("checkpoint.pt") if not (c.parent / "model.pt").exists()]
    assert finished and interrupted
    # A SIGKILLed Snakemake leaves its lock and incomplete files, and a plain restart refuses
    # (naming --unlock or --rerun-incomplete); the documented recovery is --unlock, then a rerun.
    refused = run(command, work, check=False)
    assert refused.returncode != 0 and re.search(r"--unlock|--rerun-incomplete", refused.stdout + refused.stderr)
    run([*command, "--unlock"], work)
    result = run([*command, "--rerun-incomplete"], work, timeout=1800)
    assert all(p.stat().st_mtime == mtime for p, mtime in finished.items())  # finished jobs were not rerun
    for folder in interrupted:
        log = (
            work
            / "results"
            / "smoke"
            / "logs"
            / "train"
            / folder.parent.parent.name
            / f"{folder.parent.name}_{folder.name}.log"
        )
        assert "resuming" in log.read_text(), log
    resumed = metrics(work / "results" / "smoke")
    assert sorted(f"results/smoke/{name}" for name in resumed) == targets
    uninterrupted = metrics(reference / "results" / "smoke")
    assert resumed == {name: uninterrupted[name] for name in resumed}
    assert "Complete log" in result.stdout + result.stderr
