"""The smoke preset end to end through DVC (every stage a Snakemake target), then pushed to a
local DVC remote, committed with its dvc.lock and light results as a fork shares them (README:
DVC), cloned, pulled with `make pull`, and its tables and figures regenerated without training."""

from __future__ import annotations

import json
import re
import time

import pytest
from workspace import link_venv, run

from bof.pipeline import matrix

TABLES = [f"table{n}" for n in range(1, 7)]
FIGURES = ["figure2", "figure3", "figure4", "figure5", "figure6a", "figure6b", "figure7", "figure8", "figure9"]
# what git ships of a preset (dvc.yaml: `cache: false`), and what DVC caches and git ignores
SHIPPED = ("eval/", "figure_data/", "tables/", "figures/", "REPORT.md", "summary.json", "val_curves.json")
CACHED = ("data/smoke", "results/smoke/data", "results/smoke/pretrain", "results/smoke/runs")

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
    # smoke: one seed, one set of seeds, no control rows
    assert set(summary) == {*TABLES, "seeds", "reproduction", "reproduction_by_seeds"}
    assert summary["seeds"] == [0] and list(summary["reproduction_by_seeds"]) == ["0"]
    assert summary["reproduction_by_seeds"]["0"] == summary["reproduction"]
    metrics = run(["dvc", "metrics", "show"], work).stdout
    assert "summary.json" in metrics
    assert "persist: true" in (work / "dvc.yaml").read_text()
    pending = run(["dvc", "status"], work).stdout  # what a bare `dvc repro` would run: every other preset
    assert all(f"report@{name}:" in pending for name in ("mini", "voc", "coco")) and "@smoke:" not in pending


def test_the_main_job_writes_only_the_shipped_results_and_dvc_lock_and_a_second_run_does_nothing(pushed):
    base, work, _ = pushed
    after = (base / "after_repro.txt").read_text()
    status, rest = after.split("\n--- dvc status ---\n")
    dvc_status, second = rest.split("\n--- second repro ---\n")
    changed = [line for line in status.splitlines() if line.strip()]
    assert not [line for line in changed if not line.startswith("??")], changed  # no tracked file modified
    new_files = {line[3:] for line in changed}
    shipped = {f for f in new_files if f.startswith(tuple(f"results/smoke/{name}" for name in SHIPPED))}
    assert new_files == shipped | {"dvc.lock"}, new_files - shipped  # no .gitignore: the root one ignores the rest
    assert all(any(f.startswith(f"results/smoke/{name}") for f in shipped) for name in SHIPPED), shipped
    assert "results/smoke/eval/yolov3/baseline/seed0/run.json" in shipped  # provenance and curve beside metrics
    assert "results/smoke/eval/yolov3/baseline/seed0/val_curve.json" in shipped
    ignored = run(["git", "check-ignore", "-v", *CACHED], work).stdout
    assert [line.split(":")[0] for line in ignored.splitlines()] == [".gitignore"] * len(CACHED), ignored
    # after each of the 5 stages, the stages run so far are up to date: none wrote into another's outputs
    assert dvc_status.count("Data and pipelines are up to date.") == 5, dvc_status
    assert "Running stage" not in second and "didn't change, skipping" in second


def test_an_experiment_with_a_changed_setting_retrains_exactly_its_runs_which_start_over(pushed, tmp_path):
    import shutil

    _, work, _ = pushed
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    # as in a checkout of this repository after `make run PRESET=smoke`: dvc.lock and results untracked
    run(["git", "rm", "-r", "-q", "--cached", "dvc.lock", "results/smoke"], copy)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "untracked"], copy)
    runs = copy / "results" / "smoke" / "runs"
    before = {p: p.stat().st_mtime for p in runs.rglob("model.pt")}
    frcnn = {p for p in before if p.relative_to(runs).parts[0] == "frcnn_r50"}
    # README's experiment, as written: Faster R-CNN's lr only
    log = run(["dvc", "exp", "run", "-S", "config/smoke.yaml:detectors.frcnn_r50.optim.lr=0.004", "report@smoke"], copy)
    assert "Running stage 'train@smoke'" in log.stdout and "Running stage 'pretrain@smoke'" not in log.stdout
    assert "Ran experiment(s)" in log.stdout + log.stderr
    preset = matrix.load_preset(copy / "config" / "smoke.yaml")
    assert preset.detectors["frcnn_r50"].optim["lr"] == 0.004  # the experiment is applied to the workspace
    after = {p: p.stat().st_mtime for p in runs.rglob("model.pt")}
    assert frcnn and {p for p in before if after[p] != before[p]} == frcnn  # retrained: exactly those
    for path in frcnn:
        assert list(path.parent.glob("checkpoint.stale-*.pt")), path.parent  # started over, old run kept aside
        assert json.loads((path.parent / "run.json").read_text())["config"]["optim"]["lr"] == 0.004
    assert "up to date" in run(["dvc", "status", "--with-deps", "report@smoke"], copy).stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], copy).stdout)
    (experiment,) = [exp for baseline in shown for exp in baseline.get("experiments") or []]
    (kept,) = experiment["revs"]  # DVC keeps the experiment and its params
    assert kept["data"]["params"]["config/smoke.yaml"]["data"]["detectors"]["frcnn_r50"]["optim"]["lr"] == 0.004


def job_counts(dry: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry[dry.index("Job stats:") :], re.M)}


def test_a_fresh_clone_of_the_fork_pulls_with_make_pull_and_regenerates_without_training(pushed):
    base, work, _ = pushed
    tracked = run(["git", "ls-files", "dvc.lock", ".dvc/config", "results/smoke/REPORT.md"], work).stdout.split()
    assert tracked == [".dvc/config", "dvc.lock", "results/smoke/REPORT.md"]  # what sharing takes (README: DVC)
    clone = base / "clone"
    run(["git", "clone", "-q", str(work), str(clone)], base)
    results = clone / "results" / "smoke"
    # git brings the shipped results, DVC the datasets and checkpoints
    assert (results / "REPORT.md").read_text() == (work / "results" / "smoke" / "REPORT.md").read_text()
    assert not [path for path in CACHED if (clone / path).exists()]
    link_venv(clone)
    pulled = run(["make", "pull", "PRESET=smoke"], clone)  # README's command, as written
    assert "dvc pull --with-deps report@smoke" in pulled.stdout
    assert all((clone / path).is_dir() for path in CACHED)
    assert (results / "runs" / "yolov3" / "baseline" / "seed0" / "model.pt").exists()
    assert run(["git", "status", "--porcelain"], clone).stdout == ""  # the shipped results are git's, untouched
    # DVC gave every file a new time; `make pull` then told Snakemake they are up to date
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
    repro = run(["dvc", "repro", "report@smoke"], clone).stdout  # `make run PRESET=smoke`: nothing to retrain
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
        counts = job_counts(dry)
        assert counts["train"] == 1 and "mix-beta2-2" in dry
        assert "pretrain" not in counts
    finally:
        tables.write_text(original)


def test_dvc_plots_draws_one_validation_curve_per_run_and_seed(pushed, tmp_path):
    _, work, _ = pushed
    jobs = matrix.jobs(matrix.load_preset(work / "config" / "smoke.yaml"))
    shown = json.loads(run(["dvc", "plots", "show", "--json", "results/smoke/val_curves.json"], work).stdout)
    (plot,) = shown["data"]["results/smoke/val_curves.json"]
    spec = plot["content"]
    assert spec["encoding"]["color"]["field"] == "series" and spec["mark"]["type"] == "line"
    assert "series" in spec["encoding"]["detail"][0]["field"]  # one line per series, never aggregated
    series = {row["series"] for row in spec["data"]["values"]}
    assert series == {f"{job.detector}/{job.combo} seed {job.seed}" for job in jobs} and len(series) == 19
    # README's command (for smoke): the page it writes holds that spec
    run(["dvc", "plots", "show", "results/smoke/val_curves.json", "-o", str(tmp_path / "plots")], work)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert '"field": "series"' in page and "frcnn_r50/baseline seed 0" in page


def test_snakemakes_report_holds_every_table_and_figure(pushed, tmp_path):
    _, work, _ = pushed
    page = tmp_path / "report.html"
    run(["snakemake", "--report", str(page), "--configfile", "config/smoke.yaml"], work)
    html = page.read_text(errors="replace")
    assert len(html) > 100_000  # self-contained: figures embedded
    for name in [*TABLES, "figure1", *FIGURES]:
        assert f"{name}." in html, name
