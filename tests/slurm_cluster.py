"""A real single-node SLURM cluster for the tests (Debian's slurm-wlm and munge, as
../shared/slurm/README.md describes), started and stopped by the test that needs it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# snakemake-executor-plugin-slurm-jobstep (0.6) drops every SLURM_* variable, SLURM_CONF included,
# before its nested `srun`, which then only finds the default path: the test cluster's slurm.conf
# is linked there while it runs (real clusters have theirs there already).
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def missing() -> str | None:
    """Why SLURM cannot run here, or None."""
    for tool in ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"SLURM is not installed here ({tool} not found; `apt-get install slurm-wlm munge`, as .ci/run does)"
    if os.geteuid() != 0:
        return "starting slurmctld and slurmd needs root"
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists: this machine has its own SLURM, which the tests will not reconfigure"
    return None


def _start_munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    key = Path("/etc/munge/munge.key")
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    subprocess.run(["chown", "munge:munge", str(key), "/run/munge"], check=True)
    key.chmod(0o400)
    subprocess.run(["su", "munge", "-s", "/bin/sh", "-c", "/usr/sbin/munged"], check=True)


@contextlib.contextmanager
def slurm_cluster(base: Path):
    """A running single-node SLURM (slurmctld + slurmd) configured under ``base``; yields its slurm.conf."""
    for daemon in ("slurmctld", "slurmd"):
        running = subprocess.run(["pgrep", "-a", "-x", daemon], capture_output=True, text=True).stdout.strip()
        if running:  # a second cluster would share its ports and /etc/slurm/slurm.conf, and hang
            raise RuntimeError(f"a {daemon} already runs on this machine ({running}): one test cluster at a time")
    _start_munge()
    host = socket.gethostname().split(".")[0]
    for folder in ("state", "spool", "log"):
        (base / folder).mkdir()
    memory = min(20000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2000)
    conf = base / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=bof-test",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                f"StateSaveLocation={base / 'state'}",
                f"SlurmdSpoolDir={base / 'spool'}",
                f"SlurmctldLogFile={base / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={base / 'log' / 'slurmd.log'}",
                f"SlurmctldPidFile={base / 'slurmctld.pid'}",
                f"SlurmdPidFile={base / 'slurmd.pid'}",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        raise RuntimeError(f"{SYSTEM_CONF} exists: this machine has its own SLURM")
    SYSTEM_CONF.unlink(missing_ok=True)  # only ever a link a previous test run left
    SYSTEM_CONF.symlink_to(conf)
    daemons = [
        subprocess.Popen([f"/usr/sbin/{name}", "-D"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name in ("slurmctld", "slurmd")
    ]
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        else:
            raise RuntimeError(
                f"the SLURM node did not come up: {(base / 'log' / 'slurmctld.log').read_text()[-2000:]}"
            )
        yield conf
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(timeout=30)
        SYSTEM_CONF.unlink(missing_ok=True)
