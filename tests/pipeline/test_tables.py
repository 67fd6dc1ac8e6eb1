"""Tables from metrics files: means, standard deviations, paired deltas and 95 % t-intervals."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from bof.pipeline import matrix
from bof.pipeline.preset import DetectorSpec, parse_preset
from bof.report.tables import table_frame, write_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def preset(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["seeds"] = [0, 1, 2]
    raw["results"] = str(tmp_path / "results")
    definitions = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    # every table of config/tables.yaml: each test keeps the ones it reads (`with_tables`)
    return parse_preset(tmp_path / "preset.yaml", {**raw, "tables": list(definitions)}, definitions)


def with_tables(preset, *names):
    return dataclasses.replace(preset, tables={name: preset.tables[name] for name in names})


def write_metric(preset, cell, seed, value, metric):
    path = Path(matrix.metric_path(preset, matrix.Job(cell.detector, cell.combo, seed), metric))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "mAP" if metric == "voc07" else "AP"
    path.write_text(json.dumps({key: value}))


def test_means_deltas_and_intervals(preset):
    preset = with_tables(preset, "table1", "table4")
    rows = matrix.table_cells(preset, "table1")
    baseline = [0.50, 0.52, 0.51]
    fixed = [0.55, 0.56, 0.58]
    for seed in range(3):
        write_metric(preset, rows[0][0], seed, baseline[seed], "voc07")
        write_metric(preset, rows[1][0], seed, fixed[seed], "voc07")
    frame = table_frame(preset, "table1")
    row = frame.iloc[1]
    assert row.ours == pytest.approx(100 * sum(fixed) / 3)
    deltas = [100 * (f - b) for f, b in zip(fixed, baseline, strict=True)]
    mean = sum(deltas) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in deltas) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert (
        row.delta == pytest.approx(mean)
        and row.delta_ci_low == pytest.approx(mean - half)
        and row.delta_ci_high == pytest.approx(mean + half)
    )
    assert row.paper == 83.05 and row.paper_delta == pytest.approx(1.55)
    assert frame.iloc[0].delta == 0.0 and frame.iloc[0].seeds == 3
    assert math.isnan(frame.iloc[2].ours) and frame.iloc[2].seeds == 0  # not run yet: shown as missing


def test_written_formats(preset, tmp_path):
    preset = with_tables(preset, "table1", "table4")
    rows = matrix.table_cells(preset, "table4")
    for seed in range(3):
        for orig, bof in rows:
            write_metric(preset, orig, seed, 0.30 + 0.01 * seed, "coco")
            write_metric(preset, bof, seed, 0.33 + 0.01 * seed, "coco")
    paths = write_table(preset, "table4", tmp_path / "tables")
    markdown = paths["md"].read_text()
    assert "| YOLOv3: Our BoF | 34.00 ± 1.00 | +3.00 [+3.00, +3.00] | 37.00 | +4.00 | 3 |" in markdown
    assert "\\begin{tabular}" in paths["tex"].read_text() and "Faster-RCNN R101" in paths["tex"].read_text()
    assert paths["csv"].read_text().splitlines()[0].startswith("model,ours,ours_std,seeds,delta")


def test_reproduction_summary_counts_signs_and_intervals(preset):
    from bof.report.summary import counts, reproduction_frame, summary_markdown

    preset = with_tables(preset, "table1", "table4")
    rows = matrix.table_cells(preset, "table1")
    baseline = [0.50, 0.52, 0.51]
    for seed in range(3):
        write_metric(preset, rows[0][0], seed, baseline[seed], "voc07")
        write_metric(preset, rows[1][0], seed, baseline[seed] + 0.02 + 0.001 * seed, "voc07")  # +2: significant
        write_metric(preset, rows[2][0], seed, baseline[seed] + (0.01, -0.01, 0.005)[seed], "voc07")  # unclear
        write_metric(preset, rows[3][0], seed, baseline[seed] - 0.03 - 0.001 * seed, "voc07")  # clearly worse
    frame = reproduction_frame(preset)
    verdicts = dict(zip(frame["model"], frame["verdict"], strict=True))
    assert verdicts["0.5:0.5 evenly"] == "significant"
    assert verdicts["beta(1.0, 1.0), weighted loss"] == "sign"  # mean +0.17, interval across 0
    assert verdicts["beta(1.5, 1.5), weighted loss"] == "opposite-significant"
    assert verdicts["YOLOv3: Our BoF"] == "missing" and "baseline" not in verdicts
    # 6 rows with a paper delta, 5 experiments: smoke's R101 is the R50 runs (counted once)
    assert counts(frame) == {
        "deltas": 5,
        "measured": 3,
        "same_sign": 2,
        "significant": 1,
        "opposite_significant": 1,
        "not_replicated": 0,
    }
    assert "**2 of 3 of the paper's deltas reproduced in sign, 1 significant**" in summary_markdown(preset)


def write_curve(preset, cell, seed, values, epochs):
    """The run's validation curve where the report reads it: beside its metrics in eval/."""
    path = Path(matrix.record_path(preset, matrix.Job(cell.detector, cell.combo, seed), "val_curve.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    curve = [{"epoch": e, "metric": "mAP", "value": v} for e, v in zip(epochs, values, strict=True)]
    path.write_text(json.dumps(curve))


def test_baselines_are_flat_when_every_seed_gained_under_a_point_in_the_last_quarter(preset):
    from bof.report.summary import convergence_frame, convergence_markdown

    preset = with_tables(preset, "table1", "table4")
    table1_base = matrix.table_cells(preset, "table1")[0][0]
    yolo_base = matrix.table_cells(preset, "table4")[2][0]  # Table 4's YOLOv3 "Orig"
    epochs = [5, 10, 15, 20]  # the last quarter starts after epoch 15
    for seed, last in enumerate((0.305, 0.309, 0.300)):  # gains +0.5, +0.9, 0.0 points
        write_curve(preset, table1_base, seed, [0.1, 0.2, 0.30, last], epochs)
    for seed, last in enumerate((0.305, 0.311, 0.300)):  # one seed gains 1.1 points
        write_curve(preset, yolo_base, seed, [0.1, 0.2, 0.30, last], epochs)
    frame = convergence_frame(preset).set_index("run")
    flat = frame.loc[f"{table1_base.detector}/{table1_base.combo}"]
    rising = frame.loc[f"{yolo_base.detector}/{yolo_base.combo}"]
    assert flat["flat"] and flat["final"] == pytest.approx(30.4667, abs=1e-3)
    assert flat["gain"] == pytest.approx(0.4667, abs=1e-3) and flat["worst_gain"] == pytest.approx(0.9)
    assert not rising["flat"] and rising["worst_gain"] == pytest.approx(1.1)
    text = convergence_markdown(preset)
    assert "| 3 | 30.47 | +0.47 (+0.90) | flat |" in text and "| +0.53 (+1.10) | still rising |" in text
    assert "0 | — | — | not run |" in text  # Table 4's Faster R-CNN baselines have no runs
    # a row that is no baseline gets its own table, only once it has run
    assert "The other rows" not in text
    mixup = matrix.table_cells(preset, "table1")[1][0]
    write_curve(preset, mixup, 0, [0.1, 0.2, 0.25, 0.28], epochs)  # +3 points over the last quarter
    others = convergence_frame(preset, other_rows=True).set_index("run")
    assert f"{table1_base.detector}/{table1_base.combo}" not in others.index
    assert others.loc[f"{mixup.detector}/{mixup.combo}", "worst_gain"] == pytest.approx(3.0)
    text = convergence_markdown(preset)
    assert (
        f"| {mixup.detector}/{mixup.combo} | 1 | 28.00 | +3.00 (+3.00) | still rising |"
        in text.split("The other rows")[1]
    )


def test_a_faster_rcnn_figure_detector_draws_figure_6_and_reports_the_rows_left_out(tmp_path):
    """A Faster R-CNN-only mini job (the default job until 2026-12-05): no YOLOv3 (Table 4's row
    left out), Figures 5-7 on Faster R-CNN."""
    from bof.report import figures
    from bof.report.summary import left_out_markdown

    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    raw.update(tables=["table3", "table4", "table6"], leave_out={"table4": ["YOLOv3"]})
    raw["figures"]["detector"] = "frcnn_r50"
    del raw["detectors"]["yolov3"]  # nothing of such a job may need it
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    step, cosine = matrix.figure_cells(preset)["figure6"]
    assert (step.combo, cosine.combo) == ("baseline", "cosine")
    for cell in (step, cosine):
        for seed in preset.seeds:
            write_curve(preset, cell, seed, [0.5, 0.6, 0.65, 0.66], [6, 12, 18, 24])
    run = Path(matrix.record_path(preset, matrix.Job(step.detector, step.combo, preset.seeds[0]), "run.json"))
    run.write_text(json.dumps({"train_images": 300}))
    paths = figures.figure6(preset, tmp_path / "figures")
    assert [p.name for p in paths] == ["figure6a.png", "figure6b.png"] and all(p.stat().st_size > 0 for p in paths)
    assert left_out_markdown(preset) == "**Left out by the preset** (mini.yaml says why): table4: YOLOv3."


@pytest.mark.parametrize(
    ("finals", "state"),
    [
        # the two misread runs: a 1.9 % baseline that gained +0.78, one that fell 1.05
        ((0.011, 0.0188), "learnt too little"),
        ((0.30, 0.2895), "falling"),
        ((0.30, 0.3099), "flat"),
        ((0.30, 0.3001), "flat"),
        ((0.30, 0.3101), "still rising"),
        ((0.30, 0.2901), "flat"),
        ((0.30, 0.2899), "falling"),
    ],
)
def test_flat_means_every_seed_moved_under_a_point_either_way_and_learnt_something(preset, finals, state):
    from bof.report.summary import convergence_frame, convergence_markdown

    preset = with_tables(preset, "table1")
    base = matrix.table_cells(preset, "table1")[0][0]
    start, last = finals
    write_curve(preset, base, 0, [0.0, start / 2, start, last], [5, 10, 15, 20])
    write_curve(preset, base, 1, [0.0, start / 2, start, start], [5, 10, 15, 20])  # a seed that did not move
    row = convergence_frame(preset).iloc[0]
    assert row["state"] == state and row["flat"] == (state == "flat")
    assert f"| {state} |" in convergence_markdown(preset)


def test_an_r101_that_is_the_r50_run_is_marked_and_counted_once(preset, tmp_path):
    """The smoke preset's frcnn_r101 is `same_as: frcnn_r50`: Table 4's two Faster R-CNN rows are
    the same pair of runs, so the table says so and the summary counts one experiment."""
    from bof.report.summary import counts, reproduction_frame, summary_markdown

    assert preset.detectors["frcnn_r101"] == DetectorSpec(same_as="frcnn_r50")
    preset = with_tables(preset, "table4")
    (r50_orig, r50_bof), (r101_orig, r101_bof), _ = matrix.table_cells(preset, "table4")
    assert (r50_orig, r50_bof) == (r101_orig, r101_bof)
    for seed in range(3):
        write_metric(preset, r50_orig, seed, 0.30 + 0.01 * seed, "coco")
        write_metric(preset, r50_bof, seed, 0.32 + 0.01 * seed + 0.001 * seed, "coco")
    frame = reproduction_frame(preset)
    assert list(frame["verdict"]) == ["significant", "duplicate", "missing"]
    assert counts(frame) == {
        "deltas": 2,
        "measured": 1,
        "same_sign": 1,
        "significant": 1,
        "opposite_significant": 0,
        "not_replicated": 0,
    }
    summary = summary_markdown(preset)
    assert "**1 of 1 of the paper's deltas reproduced in sign, 1 significant**" in summary
    assert (
        "| table4 | Faster-RCNN R101: Our BoF | +1.70 | +2.10 [+1.85, +2.35] | the same runs as table4 Faster-RCNN R50: Our BoF: counted once | — |"
        in summary
    )
    markdown = write_table(preset, "table4", tmp_path / "tables")["md"].read_text()
    assert "| Faster-RCNN R101: Our BoF (the Faster-RCNN R50: Our BoF runs) | 33.10 ± 1.10 |" in markdown
    assert "| Faster-RCNN R50: Our BoF | 33.10 ± 1.10 |" in markdown


def test_seeds_moving_a_point_both_ways_are_unsettled(preset):
    from bof.report.summary import convergence_frame

    preset = with_tables(preset, "table1")
    base = matrix.table_cells(preset, "table1")[0][0]
    write_curve(preset, base, 0, [0.1, 0.2, 0.30, 0.312], [5, 10, 15, 20])
    write_curve(preset, base, 1, [0.1, 0.2, 0.30, 0.288], [5, 10, 15, 20])
    row = convergence_frame(preset).iloc[0]
    assert (
        row["state"] == "unsettled"
        and row["gain"] == pytest.approx(0.0)
        and abs(row["worst_gain"]) == pytest.approx(1.2)
    )


def test_tex_is_ascii_and_csv_is_rounded_as_displayed(preset, tmp_path):
    """pdflatex without inputenc breaks on a raw Δ or ±; a CSV cell is not 1.1000000000000014 but 1.1."""
    import csv

    preset = with_tables(preset, "table4")
    (orig, bof), *_ = matrix.table_cells(preset, "table4")
    for seed in range(3):
        write_metric(preset, orig, seed, 0.30, "coco")
        write_metric(preset, bof, seed, 0.311, "coco")
    assert table_frame(preset, "table4").iloc[1].delta == 1.1000000000000014  # 100 * 0.311 - 100 * 0.30
    paths = write_table(preset, "table4", tmp_path / "tables")
    tex = paths["tex"].read_text()
    assert tex.isascii() and "±" not in tex and "Δ" not in tex
    header = r"Model & ours AP@[.5:.95] (COCO) & ours $\Delta$ [95\% CI] & paper & paper $\Delta$ & seeds \\"
    assert header in tex.splitlines()
    assert r"31.10 $\pm$ 0.00 & +1.10 [+1.10, +1.10] &" in tex and " & --- & " in tex  # "—": not run
    rows = list(csv.DictReader(paths["csv"].open()))
    assert {key: rows[1][key] for key in ("ours", "ours_std", "seeds", "delta", "delta_ci_low", "is_baseline")} == {
        "ours": "31.1",
        "ours_std": "0.0",
        "seeds": "3",
        "delta": "1.1",
        "delta_ci_low": "1.1",
        "is_baseline": "False",
    }


def mini_with_longer_mixup_pretraining(preset) -> dict:
    """mini as it was until 2026-12-05 (GluonCV's convention, as the paper presets keep it): the
    mixup twins pretrain 100 epochs, the plain backbones 60, and Table 6's length control runs."""
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = preset.results
    raw["tables"] = ["table3", "table4", "table6"]
    raw["leave_out"] = {"table4": ["YOLOv3"]}
    raw["controls"] = True
    raw["figures"]["detector"] = "frcnn_r50"
    for backbone in raw["pretrain"].values():
        backbone.update(epochs=60, mixup_recipe={"epochs": 100})
    return raw


def test_a_mixup_backbone_pretrained_longer_is_named_beside_its_verdict(preset):
    """A mixup twin pretrained 100 epochs against 60: a row with the mixup backbone against a
    baseline without it carries that difference; a row on one backbone does not."""
    from bof.report.summary import reproduction_frame, summary_markdown

    raw = mini_with_longer_mixup_pretraining(preset)
    mini = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    frame = reproduction_frame(mini).set_index(["table", "model"])
    longer = "the mixup backbone also pretrained 100 epochs, the plain one 60"
    separated = longer + " (the pretraining-length control below separates them)"  # Table 6's control
    assert frame.loc[("table4", "Faster-RCNN R50: Our BoF"), "confound"] == longer
    assert frame.loc[("table6", "+Mixup R101 / -Mixup FRCNN"), "confound"] == separated
    assert frame.loc[("table6", "+Mixup R101 / +Mixup FRCNN"), "confound"] == longer
    assert pd.isna(frame.loc[("table3", "+ mixup"), "confound"])
    assert pd.isna(frame.loc[("table6", "-Mixup R101 / +Mixup FRCNN"), "confound"])
    summary = summary_markdown(mini)
    # Table 4: R50 and its duplicate R101; Table 6: the two rows on the mixup backbone
    assert summary.count(f"| {longer} |") == 3 and summary.count(f"| {separated} |") == 1 and "| nan |" not in summary


def two_sets(preset):
    """``preset`` with seeds 0-2 and replication seeds 3-5: the pooled view and each set's."""
    declared = dataclasses.replace(
        with_tables(preset, "table1", "table4"), run_seeds=(0, 1, 2), replication_seeds=(3, 4, 5)
    )
    halves = [declared.with_seeds(seeds) for seeds in declared.seed_halves]
    return declared, declared.with_seeds(list(range(6))), halves


def test_two_sets_of_seeds_pool_and_a_verdict_the_sets_disagree_on_is_not_replicated(preset):
    from bof.report.summary import counts, replication_frame, summary_markdown

    declared, pooled, halves = two_sets(preset)
    assert declared.seeds == [0, 1, 2] and [h.seeds for h in halves] == [[0, 1, 2], [3, 4, 5]]
    rows = matrix.table_cells(pooled, "table1")
    base = [0.50, 0.52, 0.51, 0.49, 0.53, 0.50]
    gains = {
        1: [2.0, 2.1, 1.9, 2.2, 2.0, 1.8],  # +2 in both sets: significant, replicated
        2: [1.0, 1.2, 1.1, -0.3, -0.2, -0.4],  # +1.1 in the first set, -0.3 in the second
        3: [-3.0, -3.1, -2.9, -3.2, -3.0, -2.8],  # worse in both sets
    }
    for seed in range(6):
        write_metric(pooled, rows[0][0], seed, base[seed], "voc07")
        for row, gain in gains.items():
            write_metric(pooled, rows[row][0], seed, base[seed] + gain[seed] / 100, "voc07")
    frame = replication_frame(pooled, halves).set_index("model")
    assert frame.loc["0.5:0.5 evenly", "verdict"] == "significant"
    mixed = frame.loc["beta(1.0, 1.0), weighted loss"]
    assert mixed.verdict == "not-replicated"
    assert mixed.half0_delta == pytest.approx(1.1) and mixed.half1_delta == pytest.approx(-0.3)
    assert mixed.delta == pytest.approx(0.4) and mixed.seeds == 6 and mixed.half0_seeds == 3
    # the first set alone calls it significant: that is the verdict the replication overturns
    assert mixed.half0_verdict == "significant" and mixed.half1_verdict == "opposite-significant"
    assert frame.loc["beta(1.5, 1.5), weighted loss", "verdict"] == "opposite-significant"
    assert counts(replication_frame(pooled, halves).reset_index()) == {
        "deltas": 5,
        "measured": 3,
        "same_sign": 1,
        "significant": 1,
        "opposite_significant": 1,
        "not_replicated": 1,
    }
    text = summary_markdown(pooled, halves)
    assert (
        "**1 of 3 of the paper's deltas reproduced in sign, 1 significant** (paired 95 % interval over the 6 seeds"
        in text
    )
    assert "1 not replicated (the two sets of seeds do not point the same way)" in text
    assert "| seeds 0, 1, 2 Δ [95% CI] | seeds 3, 4, 5 Δ [95% CI] |" in text
    line = next(line for line in text.splitlines() if "| beta(1.0, 1.0), weighted loss |" in line)
    assert "| +1.10 [" in line and "| -0.30 [" in line
    assert "not replicated: the two sets of seeds do not point the same way" in line
    # each set's own headline, as make run (three seeds) would give it
    assert "seeds 0, 1, 2: 2 of 3 of the paper's deltas reproduced in sign, 2 significant" in text
    assert "seeds 3, 4, 5: 1 of 3 of the paper's deltas reproduced in sign, 1 significant" in text


def test_one_set_of_seeds_says_its_verdicts_are_unchecked(preset):
    from bof.report.summary import summary_markdown

    declared, _, halves = two_sets(preset)
    rows = matrix.table_cells(declared, "table1")
    for seed in range(3):
        write_metric(declared, rows[0][0], seed, 0.5, "voc07")
        write_metric(declared, rows[1][0], seed, 0.52 + 0.001 * seed, "voc07")
    text = summary_markdown(halves[0])
    assert (
        "**1 of 1 of the paper's deltas reproduced in sign, 1 significant** (paired 95 % interval over 3 seeds" in text
    )
    assert "second set of seeds (3, 4, 5, `make replicate`) has not run here" in text
    assert "not replicated" not in text and "seeds 3, 4, 5 Δ" not in text


def test_the_pretraining_length_control_separates_mixup_from_length(preset):
    """A mixup backbone pretrained 100 epochs, the plain one 60: the control's plain backbone
    pretrains 100, and its deltas split Table 6's "+Mixup R101" into length and mixup."""
    from bof.report.summary import control_frame, control_markdown, summary_markdown

    raw = mini_with_longer_mixup_pretraining(preset)
    mini = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    (control,) = matrix.controls(mini, "table6")
    # it pretrains once more and is trained and evaluated like Table 6's cells (COCO AP), every seed
    assert matrix.pretrain_jobs(mini) == [("small_resnet", p) for p in ("plain", "mixup", "plain-long")]
    assert {t for t in matrix.metric_targets(mini) if "prelong" in t} == {
        f"{mini.results}/eval/frcnn_r50/cosine_smooth_prelong/seed{seed}/coco.json" for seed in mini.seeds
    }
    assert (control.plain.combo, control.cell.combo, control.replaces.combo) == (
        "cosine_smooth",
        "cosine_smooth_prelong",
        "cosine_smooth_premix",
    )
    long, plain = (matrix.pretrain_config(mini, "small_resnet", p) for p in ("plain-long", "plain"))
    assert (long.epochs, long.mixup, plain.epochs) == (100, False, 60)
    assert {k: v for k, v in vars(long).items() if k != "epochs"} == {
        k: v for k, v in vars(plain).items() if k != "epochs"
    }
    config = matrix.train_config(mini, matrix.Job("frcnn_r50", "cosine_smooth_prelong", 0))
    assert config.model.pretrained.endswith("results/pretrain/small_resnet/plain-long/backbone.pt")
    assert config.tricks == matrix.train_config(mini, matrix.Job("frcnn_r50", "cosine_smooth", 0)).tricks
    # without `controls: true` a preset runs none
    assert (
        matrix.controls(matrix.load_preset(ROOT / "config" / "mini.yaml", raw={**raw, "controls": False}), "table6")
        == []
    )

    pooled = mini.with_seeds(list(range(6)))
    halves = [mini.with_seeds([0, 1, 2]), mini.with_seeds([3, 4, 5])]
    for seed in range(6):
        base = 0.30 + 0.002 * seed
        write_metric(pooled, control.plain, seed, base, "coco")
        write_metric(pooled, control.cell, seed, base + 0.010 + 0.001 * (seed % 2), "coco")  # length: +1.0 / +1.1
        write_metric(pooled, control.replaces, seed, base + 0.010 + 0.001 * (seed % 3), "coco")  # mixup: ~0
    frame = control_frame(pooled, halves).set_index("comparison")
    assert frame.loc["longer pretraining alone", "delta"] == pytest.approx(1.05)
    assert frame.loc["mixup in pretraining at equal length", "delta"] == pytest.approx(0.05)
    assert frame.loc["both, as the table compares them", "delta"] == pytest.approx(1.1)
    assert frame.loc["longer pretraining alone", "half1_seeds"] == 3
    text = control_markdown(pooled, halves)
    assert "| frcnn_r50/cosine_smooth_premix − frcnn_r50/cosine_smooth_prelong | COCO AP | +0.05 [" in text
    assert "longer pretraining alone changes COCO AP by +1.05 points (interval excludes 0)" in text
    assert (
        "mixup in pretraining at equal length: +0.05 points, an interval that includes 0 (no effect measured)" in text
    )
    # the verdicts it qualifies point to it
    assert "(the pretraining-length control below separates them)" in summary_markdown(pooled, halves)


def test_a_run_one_set_of_seeds_lacks_is_not_replicated_and_says_why(preset):
    from bof.report.summary import counts, replication_frame

    _, pooled, halves = two_sets(preset)
    orig, bof = matrix.table_cells(pooled, "table4")[0]  # Faster R-CNN R50: Orig, Our BoF
    for seed in range(3):  # the first set only
        write_metric(pooled, orig, seed, 0.30, "coco")
        write_metric(pooled, bof, seed, 0.32 + 0.001 * seed, "coco")
    frame = replication_frame(pooled, halves).set_index("model")
    row = frame.loc["Faster-RCNN R50: Our BoF"]
    assert row.half0_verdict == "significant" and row.half1_verdict == "missing"
    assert row.verdict == "half-missing" and row.seeds == 3
    assert counts(frame.reset_index())["not_replicated"] == 1


def test_a_bof_row_on_the_published_backbone_says_it_lacks_the_mixup_pretraining(tmp_path):
    """coco's Table 4 BoF column asks for the mixup-pretrained backbone; from published weights
    both columns start from the published one, and each of its verdicts says so."""
    from bof.report.summary import reproduction_frame

    raw = yaml.safe_load((ROOT / "config" / "coco.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    coco = matrix.load_preset(ROOT / "config" / "coco.yaml", raw=raw)
    frame = reproduction_frame(coco).set_index(["table", "model"])
    note = "no mixup in pretraining: both start from the published backbone (none is published with mixup)"
    table4 = frame.loc["table4", "confound"]
    assert len(table4) == 3 and set(table4) == {note}
    assert note not in set(frame.loc["table5", "confound"].dropna())
