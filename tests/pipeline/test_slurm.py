"""The smoke preset through a real single-node SLURM cluster started on this machine, with the
profiles/slurm-test profile: every job goes through sbatch."""

from __future__ import annotations

import re

import pytest
from slurm_cluster import missing, slurm_cluster
from workspace import make_workspace, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm")
    with slurm_cluster(base) as conf:
        yield base, conf


def test_smoke_preset_through_sbatch(cluster, tmp_path):
    base, conf = cluster
    work = make_workspace(tmp_path / "work")
    result = run(
        ["snakemake", "--profile", "profiles/slurm-test", "--configfile", "config/smoke.yaml"],
        work,
        timeout=3600,
        SLURM_CONF=str(conf),
    )
    report = work / "results" / "smoke" / "REPORT.md"
    assert report.exists() and "Runs: 19 of 19 finished" in report.read_text(), result.stdout[-3000:]
    submitted = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", (base / "log" / "slurmctld.log").read_text())
    local_rules = {"all"}
    logs = work / ".snakemake" / "slurm_logs"
    rules_with_logs = {p.name.removeprefix("rule_") for p in logs.iterdir()}
    assert {"synth", "pretrain", "train", "predict", "evaluate_voc", "evaluate_coco", "report"} <= rules_with_logs
    assert len(submitted) >= 70 - len(local_rules)
