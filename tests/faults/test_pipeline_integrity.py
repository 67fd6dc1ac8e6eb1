"""The pipeline reads back only what it verified: every file an evaluation reads is a declared
input checked against the SHA256SUMS its training wrote, and a damaged input stops the report
before the previous report set is touched (all or nothing). Each test works on a copy of the
finished smoke workspace (the session's `smoke_pushed`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from workspace import run

from bof.pipeline import matrix

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke_pushed")]  # its session fixture runs once

RESULTS = Path("results/smoke")
JOB = matrix.Job("yolov3", "baseline", 0)


def finished_copy(smoke_pushed, tmp_path) -> Path:
    """The finished smoke workspace, copied with its times (Snakemake decides by them) and its records."""
    _, reference, _ = smoke_pushed
    work = tmp_path / "work"
    shutil.copytree(reference, work, symlinks=True)
    return work


def report_set(work: Path) -> dict[str, bytes]:
    """Every file the report writes, by name, with its bytes."""
    results = work / RESULTS
    names = ["REPORT.md", "summary.json", "val_curves.json"]
    names += [
        str(p.relative_to(results)) for folder in ("tables", "figures") for p in sorted((results / folder).iterdir())
    ]
    return {name: (results / name).read_bytes() for name in names}


def snakemake(work: Path, *arguments: str, check: bool = True):
    return run(["snakemake", *arguments, "--cores", "1", "--configfile", "config/smoke.yaml"], work, check=check)


def voc_results_file(work: Path) -> Path:
    """The comp4 file of the baseline YOLOv3 run with the most detections."""
    run_dir = work / matrix.run_dir(matrix.load_preset(work / "config" / "smoke.yaml"), JOB)
    return max((run_dir / "predictions" / "voc").glob("comp4_det_*.txt"), key=lambda p: p.stat().st_size)


def test_a_cut_results_file_stops_its_evaluation_and_leaves_the_report(smoke_pushed, tmp_path):
    work = finished_copy(smoke_pushed, tmp_path)
    before = report_set(work)
    results_file = voc_results_file(work)
    lines = results_file.read_text().splitlines(keepends=True)
    assert len(lines) > 1
    results_file.write_text("".join(lines[:-1]))  # cut at a line boundary: still a valid file
    metrics = work / matrix.metric_path(matrix.load_preset(work / "config" / "smoke.yaml"), JOB, "voc07")
    metrics.unlink()  # the evaluation reruns and would quietly score the cut file

    result = snakemake(work, str(RESULTS / "REPORT.md"), check=False)

    assert result.returncode != 0
    log = (work / RESULTS / "logs" / "evaluate" / "yolov3" / "baseline_seed0_voc07.log").read_text()
    assert log.strip().splitlines()[-1] == (
        f"bof evaluate: error: {results_file.relative_to(work)}: its SHA-256 differs from the one written with it in "
        f"{results_file.parent.parent.relative_to(work)}/SHA256SUMS (the file changed after it was written); rerun "
        "the job that wrote it"
    )
    assert not metrics.exists()
    assert report_set(work) == before


def test_a_deleted_results_file_reruns_its_training(smoke_pushed, tmp_path):
    work = finished_copy(smoke_pushed, tmp_path)
    results_file = voc_results_file(work)
    written = results_file.read_bytes()
    metrics = work / matrix.metric_path(matrix.load_preset(work / "config" / "smoke.yaml"), JOB, "voc07")
    scored = metrics.read_bytes()
    results_file.unlink()
    metrics.unlink()  # its evaluation reruns, and needs the file again

    snakemake(work, str(metrics.relative_to(work)))

    log = (work / RESULTS / "logs" / "train" / "yolov3" / "baseline_seed0.log").read_text()
    run_dir = matrix.run_dir(matrix.load_preset(work / "config" / "smoke.yaml"), JOB)
    # the training Snakemake reran, from its checkpoint after the last (second) epoch
    assert re.match(rf"resuming {re.escape(run_dir)} at epoch 3 \(iteration \d+\)\n", log), log
    assert results_file.read_bytes() == written
    assert metrics.read_bytes() == scored


def test_a_corrupt_metrics_file_is_named_and_the_previous_report_stays(smoke_pushed, tmp_path):
    work = finished_copy(smoke_pushed, tmp_path)
    before = report_set(work)
    metrics = work / matrix.metric_path(matrix.load_preset(work / "config" / "smoke.yaml"), JOB, "voc07")
    metrics.write_text(metrics.read_text()[:40])

    # what `make run`'s report stage runs (dvc.yaml: report@smoke)
    result = snakemake(work, str(RESULTS / "REPORT.md"), "--forcerun", "report", check=False)

    assert result.returncode != 0
    log = (work / RESULTS / "logs" / "render_report.log").read_text()
    relative = metrics.relative_to(work)
    assert log.strip().splitlines()[-1].startswith(f"bof report: error: {relative}: not valid JSON (")
    assert report_set(work) == before
    # and `make figures` (bof report without Snakemake): one line, nothing written, no staging left
    direct = run(["bof", "report", "--preset", "config/smoke.yaml"], work, check=False)
    assert direct.returncode == 2
    assert direct.stderr.strip().splitlines() == [
        f"bof report: error: {relative}: not valid JSON ("
        + direct.stderr.split("not valid JSON (", 1)[1].split(")", 1)[0]
        + "); it changed after it was written: rerun the job that writes it"
    ]
    assert report_set(work) == before
    assert not list((work / RESULTS).glob(".report*"))
