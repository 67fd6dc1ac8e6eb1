"""A SLURM job cancelled with scancel mid-training: Snakemake's executor retries it and the
training resumes from its checkpoint (the real cluster of tests/slurm_cluster.py)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import yaml
from workspace import environment, make_workspace

# One xdist group for every test that uses the cluster: the cluster is a session fixture of the
# worker that runs the group, and two clusters on one machine would share ports and /etc/slurm.
# (pytest-xdist joins the names of several xdist_group marks into a new group: use exactly one.)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]


def test_a_cancelled_slurm_job_is_retried_and_resumes(slurm, tmp_path):
    work = make_workspace(tmp_path / "work")
    raw = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    raw["detectors"]["yolov3"]["optim"]["epochs"] = 6  # long enough to cancel it mid-training
    (work / "config" / "long.yaml").write_text(yaml.safe_dump(raw))
    target = "results/smoke/runs/yolov3/baseline/seed0/model.pt"
    env = environment(PYTHONPATH=str(work), SLURM_CONF=str(slurm))
    command = ["snakemake", target, "--profile", "profiles/slurm-test", "--configfile", "config/long.yaml"]
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = work / "results" / "smoke" / "runs" / "yolov3" / "baseline" / "seed0" / "checkpoint.pt"
    deadline = time.time() + 900
    while not checkpoint.exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.2)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %j"], env=env, capture_output=True, text=True).stdout
    running = [line.split()[0] for line in jobs.splitlines()]
    assert running, "no SLURM job was running the training"
    subprocess.run(["scancel", *running], env=env, check=True)
    output, _ = process.communicate(timeout=1800)
    assert process.returncode == 0, output[-3000:]
    assert (work / target).exists()
    log = (work / "results" / "smoke" / "logs" / "train" / "yolov3" / "baseline_seed0.log").read_text()
    assert re.search(r"resuming .* at epoch \d", log), log[-2000:]
