"""Where a preset's pipeline stands, read from its outputs alone: which pretrainings and
trainings are done, which are running (and how far), and an estimate of the time left.

Snakemake prints "N of M steps done" and each training its tqdm bar; with dozens of
trainings on two cores neither says what is left. This reads the files every job writes
(``backbone.pt``, ``model.pt``, ``checkpoint.pt``, ``train_log.jsonl``, ``run.json``), so it
works on a pipeline started by ``make run``, ``snakemake`` or a cluster alike.

The estimate: a finished run's wall time stands for the unfinished runs of its detector
(a running one's elapsed time over its done fraction when none has finished), the work left
is summed and divided by the number of jobs that run at once (``--cores``). While a kind of job
left (the pretrainings, a detector's trainings) has no finished or far enough running run, the
time left is unknown, and said so: no figure that guesses the pace of work never measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bof.io import read_json
from bof.pipeline.matrix import Preset, jobs, pretrain_config, pretrain_dir, pretrain_jobs, run_dir, train_config

RUNNING_WITHIN_SECONDS = 600  # a run folder touched this recently is running, older is interrupted


@dataclass(frozen=True)
class JobState:
    name: str
    kind: str  # "pretrain" or the detector
    state: str  # "done", "running", "interrupted", "waiting"
    fraction: float  # of its work done
    seconds: float | None  # wall time when done, elapsed so far when running


def log_records(path: Path) -> list[dict]:
    """A ``train_log.jsonl``'s records, without a last line its training is writing right now."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _training_state(folder: Path, total_iterations: int, now: float) -> tuple[str, float, float | None]:
    if (folder / "run.json").exists() and (folder / "model.pt").exists():
        return "done", 1.0, float(read_json(folder / "run.json")["wall_seconds"])
    log = folder / "train_log.jsonl"
    if not log.exists():
        return "waiting", 0.0, None
    records = log_records(log)
    iteration = records[-1]["iteration"] if records else 0
    started = (folder / "config.yaml").stat().st_mtime  # written when the run (re)starts
    recent = now - max(p.stat().st_mtime for p in folder.iterdir()) < RUNNING_WITHIN_SECONDS
    return ("running" if recent else "interrupted"), min(1.0, iteration / max(total_iterations, 1)), now - started


def _pretrain_state(folder: Path, epochs: int, now: float) -> tuple[str, float, float | None]:
    if (folder / "backbone.pt").exists():
        run = folder / "run.json"
        return "done", 1.0, float(read_json(run)["wall_seconds"]) if run.exists() else None
    if not folder.exists() or not any(folder.iterdir()):
        return "waiting", 0.0, None
    recent = now - max(p.stat().st_mtime for p in folder.iterdir()) < RUNNING_WITHIN_SECONDS
    log = folder / "train_log.jsonl"  # a record an epoch, written just before its checkpoint
    records = log_records(log) if log.exists() else []
    fraction = records[-1]["epoch"] / epochs if records else 0.0
    started = min(p.stat().st_mtime for p in folder.iterdir())
    return ("running" if recent else "interrupted"), fraction, now - started


def pipeline_status(preset: Preset, *, now: float | None = None) -> list[JobState]:
    now = time.time() if now is None else now
    states = []
    for backbone, pretraining in pretrain_jobs(preset):
        folder = Path(pretrain_dir(preset, backbone, pretraining))
        epochs = pretrain_config(preset, backbone, pretraining).epochs
        states.append(JobState(str(folder), "pretrain", *_pretrain_state(folder, epochs, now)))
    for job in jobs(preset):
        folder = Path(run_dir(preset, job))
        total = _total_iterations(folder, train_config(preset, job).optim.epochs)
        states.append(JobState(str(folder), job.detector, *_training_state(folder, total, now)))
    return states


def _total_iterations(folder: Path, epochs: int) -> int:
    """A run's iterations: epoch 1's last logged iteration times the epochs (a lower bound while in epoch 1)."""
    log = folder / "train_log.jsonl"
    if not log.exists():
        return 0
    records = log_records(log)
    firsts = [r for r in records if r["epoch"] == 1]
    per_epoch = max((r["iteration"] for r in firsts), default=0) if any(r["epoch"] > 1 for r in records) else None
    if per_epoch is None:  # still in epoch 1: the last record is a lower bound, refined as it goes
        return max(epochs * max((r["iteration"] for r in records), default=1), 1)
    return per_epoch * epochs


def _pace(states: list[JobState]) -> dict[str, float]:
    """Seconds a job of each kind takes: finished runs' wall time, else running runs' pace."""
    per_kind: dict[str, float] = {}
    for kind in {s.kind for s in states}:
        done = [s.seconds for s in states if s.kind == kind and s.state == "done" and s.seconds]
        paced = [
            s.seconds / s.fraction for s in states if s.kind == kind and s.state == "running" and s.fraction > 0.05
        ]
        if done or paced:
            per_kind[kind] = sum(done or paced) / len(done or paced)
    return per_kind


def estimate_seconds_left(states: list[JobState], cores: int) -> float | None:
    """Work left over the jobs that run at once; None while a kind of job left has shown no pace."""
    per_kind = _pace(states)
    if _unpaced(states, per_kind):
        return None
    return sum(per_kind[s.kind] * (1 - s.fraction) for s in states if s.state != "done") / max(cores, 1)


def _unpaced(states: list[JobState], per_kind: dict[str, float]) -> list[str]:
    """The kinds of job left that no run has given a pace to (no minutes can be said for them)."""
    return sorted({s.kind for s in states if s.state != "done" and s.kind not in per_kind})


def format_status(states: list[JobState], cores: int) -> str:
    counts = {state: sum(s.state == state for s in states) for state in ("done", "running", "interrupted", "waiting")}
    left = estimate_seconds_left(states, cores)
    if left is not None:
        eta = f"about {left / 60:.0f} min left on {cores} cores"
    else:
        unpaced = _unpaced(states, _pace(states))
        kinds = unpaced[0] if len(unpaced) == 1 else f"{', '.join(unpaced[:-1])} or {unpaced[-1]}"
        eta = f"time left unknown: no {kinds} job has shown its pace yet"
    lines = [
        f"{counts['done']} of {len(states)} pretraining and training jobs done, {counts['running']} running, "
        f"{counts['waiting']} waiting"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
        + f"; {eta}"
    ]
    for s in states:
        if s.state in ("running", "interrupted"):
            lines.append(f"  {s.state:<11} {s.name}: {100 * s.fraction:3.0f} %")
    return "\n".join(lines)
