"""A job that fails on its input or config fails alike on a retry (issue 24): the pipeline's
retries (the SLURM profile's, each with more memory and time) stop at once instead."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bof.cli import main
from bof.errors import FAILED_ON_INPUT
from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]


def test_a_retry_after_a_failure_on_input_stops_at_once_naming_it(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("optim: {epochs: -2}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--attempt", "1"]) == 2
    first = capsys.readouterr().err
    assert first == f"bof train: error: {config}: optim: optim.epochs must be >= 1, got -2\n"
    assert (out / FAILED_ON_INPUT).read_text() == f"{config}: optim: optim.epochs must be >= 1, got -2\n"
    assert main(["train", "--config", str(config), "--out", str(out), "--attempt", "2"]) == 2
    assert capsys.readouterr().err == (
        "bof train: error: attempt 1 failed on its input or config, a retry would too: "
        f"{config}: optim: optim.epochs must be >= 1, got -2\n"
    )
    # a new first attempt (the input fixed, the workflow run again) starts afresh
    config.write_text("optim: {epochs: -3}\n")
    assert main(["train", "--config", str(config), "--out", str(out), "--attempt", "1"]) == 2
    assert (out / FAILED_ON_INPUT).read_text() == f"{config}: optim: optim.epochs must be >= 1, got -3\n"


def test_a_retry_after_a_failure_on_input_asks_for_no_more_resources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run folders are relative to the working directory
    preset = matrix.load_preset(ROOT / "config" / "smoke.yaml")
    job = matrix.jobs(preset)[0]
    wildcards = SimpleNamespace(detector=job.detector, combo=job.combo, seed=str(job.seed))
    memory = matrix.job_resource(preset, "train", "mem_mb", per_attempt=True)
    first = memory(wildcards, 1)
    assert memory(wildcards, 2) == 2 * first  # out of memory or time: a retry with more
    marker = Path(matrix.run_dir(preset, job)) / FAILED_ON_INPUT
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("bad input\n")
    assert memory(wildcards, 2) == 1000  # the retry only says what attempt 1 found
    assert memory(wildcards, 1) == first  # a new run (the input fixed) asks for what it needs
    assert matrix.job_resource(preset, "train", "runtime", per_attempt=True)(wildcards, 3) == 5


def test_a_transient_failure_is_not_recorded_and_its_retry_runs(tmp_path, capsys, monkeypatch):
    """A full disk or a run folder held by another process is not the input's fault: no record,
    and the retry trains (here: fails the same transient way, not with the record's message)."""
    import bof.engine.train
    from bof.errors import BofError

    def full_disk(*args, **kwargs):
        raise BofError("checkpoint.pt: could not write (No space left on device)")

    monkeypatch.setattr(bof.engine.train, "train", full_disk)
    config = tmp_path / "ok.yaml"
    config.write_text("optim: {epochs: 1}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--attempt", "1"]) == 2
    assert not (out / FAILED_ON_INPUT).exists()
    assert main(["train", "--config", str(config), "--out", str(out), "--attempt", "2"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "bof train: error: checkpoint.pt: could not write (No space left on device)"
    )
