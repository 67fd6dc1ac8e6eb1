"""The smoke preset through a real single-node SLURM cluster started on this machine, with the
profiles/slurm-test profile: every job goes through sbatch.

The cluster runs the part of the smoke DAG behind two evaluations (data, anchors, both
pretrainings, one training of each detector, their evaluations): every kind of job the queue
gets. The whole DAG (56 jobs) took 17 minutes here, mostly the executor's polling between jobs,
and adds nothing the sub-DAG does not test; the whole DAG runs locally in the DVC tests.
"""

from __future__ import annotations

import json
import re

import pytest
from workspace import make_workspace, run

from bof.pipeline import matrix

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # the cluster fixture's group: see conftest.py


def planned_jobs(work, targets) -> dict[str, int]:
    """Jobs per rule of a dry run: what the cluster has to run."""
    command = ["snakemake", *targets, "-n", "--quiet", "rules", "--configfile", "config/smoke.yaml"]
    dry = run(command, work).stdout
    table = dry[dry.index("Job stats:") :].split("\n\n")[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE))
    return {rule: int(count) for rule, count in counts.items() if rule != "total"}


def test_smoke_jobs_through_sbatch(slurm, tmp_path):
    work = make_workspace(tmp_path / "work")
    preset = matrix.load_preset(work / "config" / "smoke.yaml")
    metrics = [
        matrix.metric_path(preset, matrix.Job(detector, "baseline", 0), "voc07") for detector in ("yolov3", "frcnn_r50")
    ]
    planned = planned_jobs(work, metrics)
    assert planned == {
        "synth": 1,
        "check_data": 2,
        "anchors": 1,
        "pretrain": 2,
        "train": 2,
        "evaluate_voc": 2,
    }
    result = run(
        ["snakemake", *metrics, "--profile", "profiles/slurm-test", "--configfile", "config/smoke.yaml", "--verbose"],
        work,
        timeout=1800,
        SLURM_CONF=str(slurm),
    )
    for path in metrics:
        assert 0 <= json.loads((work / path).read_text())["mAP"] <= 1, result.stdout[-3000:]
    submitted = re.findall(
        r"_slurm_rpc_submit_batch_job: JobId=(\d+)", (slurm.parent / "log" / "slurmctld.log").read_text()
    )
    logs = work / ".snakemake" / "slurm_logs"
    batch_logs = {p.name.removeprefix("rule_"): len(list(p.rglob("*.log"))) for p in logs.iterdir()}
    # every planned job of every rule went through sbatch (a retried job leaves one log a try)
    assert set(batch_logs) == set(planned) and all(batch_logs[r] >= n for r, n in planned.items()), batch_logs
    assert len(submitted) >= sum(planned.values())
    # a (multi-GPU) training or pretraining must stay on one node: torch.distributed.run --standalone
    calls = [line for line in (result.stdout + result.stderr).splitlines() if "sbatch call:" in line]
    one_node = [call for call in calls if "--nodes=1" in call]
    assert len(one_node) >= planned["train"] + planned["pretrain"], calls[:3]
