"""`bof report` (what `make figures` runs) on results alone: the shipped mini results rebuild
every table, figure and REPORT.md in a copy of the project without the dataset or a checkpoint,
and a preset without results is an error that writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bof.data.images import from_png_base64, load_image
from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "results" / "mini"
# what git ships of a preset's results (the rest is DVC's: datasets, checkpoints, logs)
SHIPPED_LAYER = {"eval", "figure_data", "tables", "figures", "REPORT.md", "summary.json", "val_curves.json"}


def bof(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bof", *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def tracked_copy(target: Path) -> Path:
    """The project's git-tracked files, as a fresh clone has them (no data/, no runs, no venv)."""
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_the_shipped_mini_results_are_the_light_layer_only():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert files, "results/mini is not shipped"
    assert {p.relative_to(SHIPPED).parts[0] for p in files} <= SHIPPED_LAYER
    assert not [p for p in files if p.suffix in (".pt", ".jpg")]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20  # README: a few MB
    declared = matrix.load_preset(ROOT / "config" / "mini.yaml")
    # both sets of seeds: make run's and make replicate's (README, "What the shipped run measured")
    preset = declared.with_seeds([seed for half in declared.seed_halves for seed in half])
    assert preset.seeds == [0, 1, 2, 3, 4, 5]
    for path in (*matrix.metric_targets(preset), *matrix.record_targets(preset), *matrix.figure_data_targets(preset)):
        assert (ROOT / path).is_file(), path
    summary = json.loads((SHIPPED / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2, 3, 4, 5]
    assert list(summary["reproduction_by_seeds"]) == ["0, 1, 2", "3, 4, 5"]


def test_the_shipped_budget_study_holds_every_run_of_its_three_budgets():
    """results/budget (issue 27): the 45 trainings' metrics and records, the figure and a report
    that opens with the answer, and nothing heavy."""
    shipped = ROOT / "results" / "budget"
    files = [p for p in shipped.rglob("*") if p.is_file()]
    assert {p.relative_to(shipped).parts[0] for p in files} <= SHIPPED_LAYER
    assert not [p for p in files if p.suffix in (".pt", ".jpg")]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    preset = matrix.load_preset(ROOT / "config" / "budget.yaml")
    assert len(matrix.metric_targets(preset)) == 45
    for path in (*matrix.metric_targets(preset), *matrix.record_targets(preset), *matrix.figure_data_targets(preset)):
        assert (ROOT / path).is_file(), path
    report = (shipped / "REPORT.md").read_text().splitlines()
    assert report[2] == "## Each freebie's delta against the training budget"
    assert "![budget](figures/budget.png)" in report[:20] and (shipped / "figures" / "budget.png").is_file()
    summary = json.loads((shipped / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert [entry["freebie"] for entry in summary["budget"]] == [
        "+ cosine lr schedule",
        "+ class label smoothing",
        "+ mixup",
        "+ mixup, GluonCV's script",
    ]
    assert all(set(entry["delta_by_epochs"]) == {"12", "24", "48"} for entry in summary["budget"])


@pytest.mark.slow
def test_a_replication_set_with_a_run_missing_is_left_out_and_said(tmp_path):
    """A second set of seeds with one metrics file missing would make the pooled numbers a mix: the
    report uses the first set alone and says so, and `--complete` (make ship) fails naming the file."""
    work = tracked_copy(tmp_path / "clone")
    gone = work / "results" / "mini" / "eval" / "frcnn_r50" / "baseline" / "seed4" / "voc07.json"
    gone.unlink()
    result = bof("report", "--preset", "config/mini.yaml", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (work / "results" / "mini" / "REPORT.md").read_text()
    assert (
        "Seeds: 0, 1, 2 (`make run`). The replication seeds 3, 4, 5 are incomplete (`make replicate`) and not used."
        in report
    )
    assert "over 3 seeds excludes 0" in report and "not replicated" not in report
    assert json.loads((work / "results" / "mini" / "summary.json").read_text())["seeds"] == [0, 1, 2]
    result = bof("report", "--preset", "config/mini.yaml", "--complete", cwd=work)
    assert result.returncode != 0 and "results/mini/eval/frcnn_r50/baseline/seed4/voc07.json" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mini", "budget"])
def test_a_clone_rebuilds_every_table_figure_and_the_report_from_the_shipped_results(tmp_path, name):
    """`make figures PRESET=<name>` in a fresh clone: no dataset, no training, the same tables."""
    work = tracked_copy(tmp_path / "clone")
    assert not (work / "data").exists() and not (work / "results" / name / "runs").exists()
    shipped, results = ROOT / "results" / name, work / "results" / name
    produced = [results / "REPORT.md", *results.glob("tables/*"), *results.glob("figures/*.png")]
    for path in produced:
        path.unlink()
    inputs = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    started = time.time()
    result = bof("report", "--preset", f"config/{name}.yaml", "--complete", cwd=work)
    seconds = time.time() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert seconds < 120
    for table in sorted((shipped / "tables").iterdir()):
        assert (results / "tables" / table.name).read_bytes() == table.read_bytes(), table.name
    assert (results / "REPORT.md").read_text() == (shipped / "REPORT.md").read_text()
    assert "Missing inputs" not in (results / "REPORT.md").read_text()
    shipped_figures = sorted(p.name for p in (shipped / "figures").glob("*.png"))
    assert sorted(p.name for p in (results / "figures").glob("*.png")) == shipped_figures
    assert all((results / "figures" / figure).stat().st_size > 1000 for figure in shipped_figures)
    # the inputs were read, not touched
    assert {p: p.read_bytes() for p in inputs} == inputs
    assert not (work / "data").exists() and not (results / "runs").exists()


def test_a_preset_without_results_is_an_error_that_writes_nothing(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = str(tmp_path / "results" / "mini")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    preset = tmp_path / "config" / "mini.yaml"
    preset.write_text(yaml.safe_dump(raw))
    result = bof("report", "--preset", str(preset), cwd=ROOT)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"bof report: error: {tmp_path / 'results' / 'mini'}: no results of preset 'mini'")
    assert "make run PRESET=mini" in message and "Nothing was written." in message
    assert not (tmp_path / "results").exists()


def test_figures_2_and_3_come_from_their_json_without_the_dataset(tiny_synth, tmp_path):
    from bof.report.figures import figures_2_to_4

    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    section = {"format": "voc", "root": str(data / "VOCdevkit"), "train": ["2007:trainval"], "val": ["2007:test"]}
    out = tmp_path / "figure_data" / "figure2.json"
    result = bof("figure-data", "figure2", "--data-json", json.dumps(section), "--out", str(out), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    trainval = (data / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert saved["train_images"] == len(trainval)
    first = saved["images"][0]
    assert first["image_id"] == trainval[0]
    original = load_image(data / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{trainval[0]}.jpg")
    assert torch.equal(from_png_base64(first["png"]), original.contiguous())  # lossless
    shutil.rmtree(data)
    paths = figures_2_to_4(out, tmp_path / "figures")
    assert [p.name for p in paths] == ["figure2.png", "figure3.png", "figure4.png"]


def test_an_embedded_image_that_is_not_png_names_the_file(tmp_path):
    from bof.errors import DatasetError

    with pytest.raises(DatasetError, match=r"figure5.json: embedded image is not base64 PNG"):
        from_png_base64("bm90IGEgcG5n", tmp_path / "figure5.json")
