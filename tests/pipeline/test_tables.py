"""Tables from metrics files: means, standard deviations, paired deltas and 95 % t-intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from bof.pipeline import matrix
from bof.report.tables import table_frame, write_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def preset(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["seeds"] = [0, 1, 2]
    raw["results"] = str(tmp_path / "results")
    raw["tables"] = ["table1", "table4"]
    return matrix.Preset(
        tmp_path / "preset.yaml", raw, yaml.safe_load((ROOT / "config" / "tables.yaml").read_text()) | {}
    )


def write_metric(preset, cell, seed, value, metric):
    path = Path(matrix.metric_path(preset, matrix.Job(cell.detector, cell.combo, seed), metric))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "mAP" if metric == "voc07" else "AP"
    path.write_text(json.dumps({key: value}))


def test_means_deltas_and_intervals(preset):
    preset = matrix.Preset(preset.path, preset.raw, {name: preset.tables[name] for name in ("table1", "table4")})
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
    preset = matrix.Preset(preset.path, preset.raw, {name: preset.tables[name] for name in ("table1", "table4")})
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

    preset = matrix.Preset(preset.path, preset.raw, {name: preset.tables[name] for name in ("table1", "table4")})
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
    assert counts(frame) == {"deltas": 6, "measured": 3, "same_sign": 2, "significant": 1, "opposite_significant": 1}
    assert "**2 of 3 of the paper's deltas reproduced in sign, 1 significant**" in summary_markdown(preset)


def write_curve(preset, cell, seed, values, epochs):
    folder = Path(matrix.run_dir(preset, matrix.Job(cell.detector, cell.combo, seed)))
    folder.mkdir(parents=True, exist_ok=True)
    curve = [{"epoch": e, "metric": "mAP", "value": v} for e, v in zip(epochs, values, strict=True)]
    (folder / "val_curve.json").write_text(json.dumps(curve))


def test_baselines_are_flat_when_every_seed_gained_under_a_point_in_the_last_quarter(preset):
    from bof.report.summary import convergence_frame, convergence_markdown

    preset = matrix.Preset(preset.path, preset.raw, {name: preset.tables[name] for name in ("table1", "table4")})
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
    """The default mini job: no YOLOv3 (Table 4's row left out), Figures 5-7 on Faster R-CNN."""
    from bof.report import figures
    from bof.report.summary import left_out_markdown

    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    del raw["detectors"]["yolov3"]  # nothing of the default job may need it
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    step, cosine = matrix.figure_cells(preset)["figure6"]
    assert (step.combo, cosine.combo) == ("baseline", "cosine")
    for cell in (step, cosine):
        for seed in preset.seeds:
            write_curve(preset, cell, seed, [0.5, 0.6, 0.65, 0.66], [6, 12, 18, 24])
    paths = figures.figure6(preset, tmp_path / "figures", train_images=300)
    assert [p.name for p in paths] == ["figure6a.png", "figure6b.png"] and all(p.stat().st_size > 0 for p in paths)
    assert left_out_markdown(preset) == "**Left out by the preset** (mini.yaml says why): table4: YOLOv3."
