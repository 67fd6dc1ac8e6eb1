"""The budget study (config/budget.yaml, issue 27): a preset's ``budgets`` train every row of a
detector's tables at each length, and the report opens with each freebie's delta against the
budget, its change with a Welch interval, and where it stands against zero at the longest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from bof.config import to_dict
from bof.errors import ConfigError
from bof.pipeline import matrix
from bof.report.budget import budget_frame, trend_frame
from bof.report.report import make_report

ROOT = Path(__file__).resolve().parents[2]
BUDGET = ROOT / "config" / "budget.yaml"


def budget_preset(tmp_path, **changes):
    raw = yaml.safe_load(BUDGET.read_text())
    raw["results"] = str(tmp_path / "results")
    raw.update(changes)
    return matrix.load_preset(BUDGET, raw=raw)


def test_the_study_trains_table_3s_ladder_at_12_24_and_48_epochs_with_three_seeds(tmp_path):
    preset = budget_preset(tmp_path)
    assert list(preset.tables) == ["table3_12e", "table3_24e", "table3_48e"]
    assert [row.name for row in preset.tables["table3_48e"].rows] == [
        "baseline",
        "+ cosine lr schedule",
        "+ class label smoothing",
        "+ mixup",
        "+ mixup, GluonCV's script",
    ]
    jobs = matrix.jobs(preset)
    assert len(jobs) == 5 * 3 * 3 and matrix.pretrain_jobs(preset) == [("small_resnet", "plain")]
    mixups = [
        matrix.train_config(preset, job) for job in jobs if job.detector == "frcnn_r50_48e" and "mix" in job.combo
    ]
    for config in mixups:
        assert (config.optim.epochs, config.optim.step_epochs, config.run.val_every) == (48, (28.0,), 6)
        assert config.tricks.mixup.off_last_epochs == 5
    # both Faster R-CNN mixups: the paper's §3.1 and GluonCV's script variant
    assert {(c.tricks.mixup.mode, c.tricks.mixup.weighted, c.tricks.mixup.loss_scale) for c in mixups} == {
        ("beta", True, 1.0),
        ("fixed", False, 0.5),
    }
    short = matrix.train_config(preset, matrix.Job("frcnn_r50_12e", "baseline", 0))
    assert (short.optim.epochs, short.optim.step_epochs, short.run.val_every) == (12, (7.0,), 3)


def test_the_24_epoch_budget_is_the_default_jobs_training(tmp_path):
    """The middle budget is the default job's Faster R-CNN recipe, row for row: one recipe, not a new
    one (the default job leaves out GluonCV's script variant of mixup; the study runs it)."""
    study = budget_preset(tmp_path)
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = study.results
    raw["leave_out"] = {}
    mini = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    compared = set()
    for job in (job for job in matrix.jobs(study) if job.detector == "frcnn_r50_24e"):
        ours = to_dict(matrix.train_config(study, job))
        assert ours == to_dict(matrix.train_config(mini, matrix.Job("frcnn_r50", job.combo, job.seed)))
        compared.add(job.combo)
    assert len(compared) == 5


def test_a_budget_on_a_detector_the_preset_lacks_or_on_half_a_table_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="budgets names detector 'yolov3', which the preset does not define"):
        budget_preset(tmp_path, budgets={"yolov3": [{"epochs": 10}, {"epochs": 20}]})
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw.update(tables=["table4"], budgets={"frcnn_r50": [{"epochs": 12}, {"epochs": 24}]})
    with pytest.raises(ConfigError, match="budgets.frcnn_r50: a detector with budgets cannot be same_as another"):
        matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)  # frcnn_r101 is same_as frcnn_r50
    del raw["detectors"]["frcnn_r101"]
    with pytest.raises(ConfigError, match=r"table4 trains .*yolov3.* budgets apply to whole tables"):
        matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    with pytest.raises(ConfigError, match=r"epochs \[12, 12\] repeat a length"):
        budget_preset(tmp_path, budgets={"frcnn_r50": [{"epochs": 12}, {"epochs": 12}]})


# mAP (%) by row, budget and seed: the baseline, then each row adds its freebie's delta
BASELINE = {12: [60.0, 61.0, 59.0], 24: [70.0, 71.5, 69.0], 48: [74.0, 74.5, 73.5]}
ADDED = {  # what each row adds to the row it stacks on, seed by seed
    "+ cosine lr schedule": {12: [-3.0, -2.0, -4.0], 24: [-1.0, 0.0, -0.5], 48: [1.0, 1.5, 2.0]},
    "+ class label smoothing": {12: [1.0, 2.0, 1.5], 24: [0.5, 0.0, 0.2], 48: [-1.0, -2.0, -1.5]},
    "+ mixup": {12: [-6.0, -7.0, -5.0], 24: [-4.0, -3.0, -3.5], 48: [-2.0, -3.0, -2.5]},
    "+ mixup, GluonCV's script": {12: [-5.0, -4.0, -6.0], 24: [-5.0, -6.0, -5.5], 48: [-6.0, -4.0, -5.0]},
}


def write_results(preset):
    for budget, base in BASELINE.items():
        table = preset.tables[f"table3_{budget}e"]
        values = {"baseline": list(base)}
        for row, cells in zip(table.rows, matrix.table_cells(preset, table.name), strict=True):
            if row.name in ADDED:
                under = values[table.stacked_on(row).name]
                values[row.name] = [v + a for v, a in zip(under, ADDED[row.name][budget], strict=True)]
            for seed in preset.seeds:
                value = values[row.name][seed]
                job = matrix.Job(cells[0].detector, cells[0].combo, seed)
                path = Path(matrix.metric_path(preset, job, "voc07"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"mAP": value / 100}))


def test_each_freebies_delta_is_over_the_row_it_stacks_on_with_a_paired_interval(tmp_path):
    preset = budget_preset(tmp_path)
    write_results(preset)
    frame = budget_frame(preset)
    assert len(frame) == 4 * 3
    gluoncv = frame[(frame.freebie == "+ mixup, GluonCV's script") & (frame.epochs == 24)].iloc[0]
    assert gluoncv.stacked_on == "+ class label smoothing" and gluoncv.deltas == pytest.approx([-5.0, -6.0, -5.5])
    assert math.isnan(gluoncv.paper_delta)  # a row the paper does not have
    mixup = frame[(frame.freebie == "+ mixup") & (frame.epochs == 48)].iloc[0]
    assert mixup.stacked_on == "+ class label smoothing"
    assert mixup.deltas == pytest.approx([-2.0, -3.0, -2.5])
    half = stats.t.ppf(0.975, 2) * np.std([-2.0, -3.0, -2.5], ddof=1) / np.sqrt(3)
    assert (mixup.delta, mixup.delta_ci_low, mixup.delta_ci_high) == pytest.approx((-2.5, -2.5 - half, -2.5 + half))
    assert mixup.paper_delta == pytest.approx(81.32 - 80.23)  # the paper's Table 3, the same step
    cosine = frame[(frame.freebie == "+ cosine lr schedule") & (frame.epochs == 12)].iloc[0]
    assert cosine.stacked_on == "baseline" and cosine.delta == pytest.approx(-3.0)


def test_the_change_with_the_budget_gets_a_welch_interval_and_a_verdict(tmp_path):
    preset = budget_preset(tmp_path)
    write_results(preset)
    trends = trend_frame(preset).set_index("freebie")
    for freebie, trend, side in [
        ("+ cosine lr schedule", "rises", "above 0"),
        ("+ class label smoothing", "falls", "below 0"),
        ("+ mixup", "rises", "below 0"),
        ("+ mixup, GluonCV's script", "no clear change", "below 0"),
    ]:
        row = trends.loc[freebie]
        welch = stats.ttest_ind(ADDED[freebie][48], ADDED[freebie][12], equal_var=False).confidence_interval(0.95)
        assert (row.change_ci_low, row.change_ci_high) == pytest.approx((welch.low, welch.high))
        assert row.change == pytest.approx(np.mean(ADDED[freebie][48]) - np.mean(ADDED[freebie][12]))
        assert (row.trend, row.last_side) == (trend, side), freebie


def test_the_study_report_opens_with_the_answer_and_its_figure(tmp_path):
    preset = budget_preset(tmp_path)
    write_results(preset)
    report = make_report(preset).read_text()
    lines = report.splitlines()
    assert lines[0] == "# Bag of Freebies, reproduced: preset `budget`"
    assert lines[2] == "## Each freebie's delta against the training budget"
    table = [line for line in lines[:20] if line.startswith("| table3 |")]
    assert [line.split(" | ")[1] for line in table] == [
        "+ cosine lr schedule",
        "+ class label smoothing",
        "+ mixup",
        "+ mixup, GluonCV's script",
    ]
    assert table[2].endswith("| rises | -2.50 [-3.74, -1.26] | below 0 |")
    assert "![budget](figures/budget.png)" in lines[:30]
    assert (tmp_path / "results" / "figures" / "budget.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert [entry["trend"] for entry in summary["budget"]] == ["rises", "falls", "rises", "no clear change"]
    assert summary["budget"][2]["delta_by_epochs"] == {"12": -6.0, "24": -3.5, "48": -2.5}


def test_one_seed_gives_deltas_but_no_interval_and_no_verdict(tmp_path):
    preset = budget_preset(tmp_path, seeds=[0])
    write_results(preset)
    trends = trend_frame(preset)
    assert trends.deltas.iloc[0] == pytest.approx({12: -3.0, 24: -1.0, 48: 1.0})  # seed 0's
    assert set(trends.trend) == set(trends.last_side) == {"—"}


def test_a_budget_table_without_a_stacked_row_opens_with_nothing_and_draws_no_figure(tmp_path):
    rows = ["- data augmentation", "+ cosine lr schedule", "+ class label smoothing", "+ mixup"]
    preset = budget_preset(tmp_path, leave_out={"table3": [*rows, "+ mixup, GluonCV's script"]})
    assert "budget" not in matrix.report_figures(preset)
    for table in preset.tables.values():
        for seed in preset.seeds:
            path = Path(matrix.metric_path(preset, matrix.Job(f"frcnn_r50_{table.epochs}e", "baseline", seed), "voc07"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"mAP": 0.7}))
    report = make_report(preset).read_text()
    assert (
        "against the training budget" not in report and not (tmp_path / "results" / "figures" / "budget.png").exists()
    )
    assert "table3: - data augmentation, + cosine lr schedule" in report  # what the preset left out, by its table


def test_a_table_of_detectors_with_different_budgets_is_an_error():
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    del raw["detectors"]["frcnn_r101"]
    raw.update(tables=["table4"], leave_out={"table4": ["Faster-RCNN R101"]})
    yolo = [{"epochs": 30, "step_epochs": [18, 24]}, {"epochs": 90}]
    raw["budgets"] = {"yolov3": yolo, "frcnn_r50": [{"epochs": 12, "step_epochs": [7]}, {"epochs": 24}]}
    with pytest.raises(ConfigError, match="table4 trains detectors with different budgets"):
        matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    raw["budgets"]["frcnn_r50"] = [{"epochs": 30, "step_epochs": [17]}, {"epochs": 90, "step_epochs": [52]}]
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    assert [row.detector for row in preset.tables["table4_90e"].rows] == ["frcnn_r50_90e", "yolov3_90e"]
    runtime = preset.detectors["frcnn_r50_90e"].resources.runtime
    assert runtime == math.ceil(120 * 90 / 24)  # a cluster job's limit grows with its epochs


def test_what_reproduced_counts_each_paper_delta_once_per_training_length(tmp_path):
    preset = budget_preset(tmp_path)
    write_results(preset)
    report = make_report(preset).read_text()
    section = report.split("## What reproduced", 1)[1]
    by_length = next(line for line in section.splitlines() if line.startswith("A budget table's paper deltas"))
    # cumulative over the baseline as the paper's Table 3 (ADDED summed): at 12 epochs cosine -3.0,
    # + smoothing -1.5 (interval holds 0), + mixup -7.5; at 48: +1.5, 0.0, -2.5
    assert by_length.endswith(
        "holds each of them once per length. By length: 12 epochs: 0 of 3 in sign, 0 significant, 2 significantly opposite;"
        " 24 epochs: 0 of 3 in sign, 0 significant, 1 significantly opposite;"
        " 48 epochs: 1 of 3 in sign, 1 significant, 1 significantly opposite."
    )
