"""The smoke preset through a real single-node SLURM cluster started on this machine, with the
profiles/slurm-test profile: every job goes through sbatch."""

from __future__ import annotations

import re

import pytest
from slurm_cluster import missing, slurm_cluster
from workspace import make_workspace, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one SLURM cluster at a time


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm")
    with slurm_cluster(base) as conf:
        yield base, conf


def planned_jobs(work) -> dict[str, int]:
    """Jobs per rule of a dry run: what the cluster has to run."""
    dry = run(["snakemake", "-n", "--quiet", "rules", "--configfile", "config/smoke.yaml"], work).stdout
    table = dry[dry.index("Job stats:") :].split("\n\n")[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE))
    return {rule: int(count) for rule, count in counts.items() if rule != "total"}


def test_smoke_preset_through_sbatch(cluster, tmp_path):
    base, conf = cluster
    work = make_workspace(tmp_path / "work")
    planned = planned_jobs(work)
    assert planned["train"] == 19 and planned["all"] == 1
    result = run(
        ["snakemake", "--profile", "profiles/slurm-test", "--configfile", "config/smoke.yaml", "--verbose"],
        work,
        timeout=3600,
        SLURM_CONF=str(conf),
    )
    report = work / "results" / "smoke" / "REPORT.md"
    assert report.exists() and "Runs: 19 of 19 finished" in report.read_text(), result.stdout[-3000:]
    submitted = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", (base / "log" / "slurmctld.log").read_text())
    local_rules = {"all", "report"}  # the Snakefile's `localrules` (download is not in the smoke DAG)
    logs = work / ".snakemake" / "slurm_logs"
    batch_logs = {p.name.removeprefix("rule_"): len(list(p.rglob("*.log"))) for p in logs.iterdir()}
    expected = {rule: count for rule, count in planned.items() if rule not in local_rules}
    # every planned job of every rule went through sbatch (a retried job leaves one log a try)
    assert set(batch_logs) == set(expected) and all(batch_logs[r] >= n for r, n in expected.items()), batch_logs
    assert len(submitted) >= sum(expected.values())
    # a (multi-GPU) training or pretraining must stay on one node: torch.distributed.run --standalone
    calls = [line for line in (result.stdout + result.stderr).splitlines() if "sbatch call:" in line]
    one_node = [call for call in calls if "--nodes=1" in call]
    assert len(one_node) >= planned["train"] + planned["pretrain"], calls[:3]
