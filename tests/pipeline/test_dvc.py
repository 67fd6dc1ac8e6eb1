"""The smoke preset end to end through DVC (every stage a Snakemake target), then pushed to a
local DVC remote, cloned, pulled, and its tables and figures regenerated without training."""

from __future__ import annotations

import json
import re
import time

import pytest
from workspace import run

TABLES = [f"table{n}" for n in range(1, 7)]
FIGURES = ["figure2", "figure3", "figure4", "figure5", "figure6a", "figure6b", "figure7", "figure8", "figure9"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke_pushed")]  # its session fixture runs once


@pytest.fixture
def pushed(smoke_pushed):
    return smoke_pushed


def test_every_stage_ran_and_every_table_and_figure_exists(pushed):
    _, work, log = pushed
    for stage in ("data", "pretrain", "train", "evaluate", "report"):
        assert f"Running stage '{stage}@smoke'" in log
    assert "@mini" not in log and "@voc" not in log  # only the preset asked for
    results = work / "results" / "smoke"
    for table in TABLES:
        for suffix in ("md", "tex", "csv"):
            assert (results / "tables" / f"{table}.{suffix}").stat().st_size > 0
    for figure in FIGURES:
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    report = (results / "REPORT.md").read_text()
    assert "Runs: 19 of 19 finished" in report and "Missing inputs" not in report
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary) == {*TABLES, "reproduction"}
    metrics = run(["dvc", "metrics", "show"], work).stdout
    assert "summary.json" in metrics
    assert "persist: true" in (work / "dvc.yaml").read_text()


def test_the_main_job_changes_no_tracked_file_and_a_second_run_does_nothing(pushed):
    base, _, _ = pushed
    after = (base / "after_repro.txt").read_text()
    status, rest = after.split("\n--- dvc status ---\n")
    dvc_status, second = rest.split("\n--- second repro ---\n")
    changed = [line for line in status.splitlines() if line.strip()]
    assert not [line for line in changed if not line.startswith("??")], changed  # no tracked file modified
    new_files = {line[3:] for line in changed}
    assert "dvc.lock" in new_files and all(f == "dvc.lock" or f.endswith(".gitignore") for f in new_files), new_files
    # after each of the 5 stages, the stages run so far are up to date: none wrote into another's outputs
    assert dvc_status.count("Data and pipelines are up to date.") == 5, dvc_status
    assert "Running stage" not in second and "didn't change, skipping" in second


def test_a_changed_setting_retrains_exactly_its_runs_which_start_over(pushed, tmp_path):
    import shutil

    _, work, _ = pushed
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    preset = copy / "config" / "smoke.yaml"
    preset.write_text(preset.read_text().replace("lr: 0.005", "lr: 0.004", 1))  # Faster R-CNN's lr only
    runs = copy / "results" / "smoke" / "runs"
    before = {p: p.stat().st_mtime for p in runs.rglob("model.pt")}
    dry = run(["snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml"], copy).stdout
    frcnn = {p for p in before if p.relative_to(runs).parts[0] == "frcnn_r50"}
    assert job_counts(dry)["train"] == len(frcnn) > 0
    log = run(["dvc", "repro", "report@smoke"], copy).stdout
    assert "Running stage 'train@smoke'" in log and "Running stage 'pretrain@smoke'" not in log
    after = {p: p.stat().st_mtime for p in runs.rglob("model.pt")}
    assert {p for p in before if after[p] != before[p]} == frcnn  # retrained: exactly those
    for path in frcnn:
        assert list(path.parent.glob("checkpoint.stale-*.pt")), path.parent  # started over, old run kept aside
        assert json.loads((path.parent / "run.json").read_text())["config"]["optim"]["lr"] == 0.004
    assert "up to date" in run(["dvc", "status", "--with-deps", "report@smoke"], copy).stdout


def job_counts(dry: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry[dry.index("Job stats:") :], re.M)}


def test_a_fresh_clone_pulls_and_regenerates_without_training(pushed):
    base, work, _ = pushed
    clone = base / "clone"
    run(["git", "clone", "-q", str(work), str(clone)], base)
    run(["dvc", "pull", "--with-deps", "report@smoke"], clone)  # as `make pull PRESET=smoke`
    results = clone / "results" / "smoke"
    assert (results / "runs" / "yolov3" / "baseline" / "seed0" / "model.pt").exists()
    # DVC gave every file a new time; `make pull` then tells Snakemake they are up to date
    run(["snakemake", "all", "--touch", "--cores", "1", "--configfile", "config/smoke.yaml"], clone)
    dry = run(["snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml"], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    assert "up to date" in run(["dvc", "status", "--with-deps", "report@smoke"], clone).stdout
    runs_before = {p: p.stat().st_mtime for p in (results / "runs").rglob("*") if p.is_file()}
    for table in TABLES:
        (results / "tables" / f"{table}.md").unlink()
    (results / "REPORT.md").unlink()
    started = time.time()
    run(["bof", "report", "--preset", "config/smoke.yaml"], clone)
    assert time.time() - started < 120
    assert all((results / "tables" / f"{table}.md").exists() for table in TABLES)
    assert (results / "REPORT.md").read_text() == (work / "results" / "smoke" / "REPORT.md").read_text()
    assert {p: p.stat().st_mtime for p in (results / "runs").rglob("*") if p.is_file()} == runs_before
    repro = run(["dvc", "repro", "report@smoke"], clone).stdout
    assert not re.search(r"Running stage '(data|pretrain|train|evaluate)@smoke'", repro)


def test_adding_a_combination_trains_only_it(pushed):
    _, work, _ = pushed
    tables = work / "config" / "tables.yaml"
    original = tables.read_text()
    try:
        extra = '    - {name: "beta(2.0, 2.0), weighted loss", paper: null, tricks: {mixup: {mode: beta, alpha: 2.0, beta: 2.0}}}\n'
        marker = "\ntable2:"
        tables.write_text(original.replace(marker, extra + marker, 1))
        dry = run(["snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml"], work).stdout
        counts = {
            m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry[dry.index("Job stats:") :], re.M)
        }
        assert counts["train"] == 1 and "mix-beta2-2" in dry
        assert "pretrain" not in counts
    finally:
        tables.write_text(original)


def test_snakemakes_report_holds_every_table_and_figure(pushed, tmp_path):
    _, work, _ = pushed
    page = tmp_path / "report.html"
    run(["snakemake", "--report", str(page), "--configfile", "config/smoke.yaml"], work)
    html = page.read_text(errors="replace")
    assert len(html) > 100_000  # self-contained: figures embedded
    for name in [*TABLES, "figure1", *FIGURES]:
        assert f"{name}." in html, name
