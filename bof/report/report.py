"""``results/<preset>/REPORT.md``: every table and figure with the preset, seeds and provenance,
regenerated from metrics and saved detections in seconds, without training anything."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from bof.io import atomic_write_json, atomic_write_text
from bof.pipeline.matrix import Preset, figure_cells, figure_detector, jobs, left_out, run_dir
from bof.report import figures
from bof.report.summary import convergence_markdown, counts, left_out_markdown, reproduction_frame, summary_markdown
from bof.report.tables import table_frame, write_table

log = logging.getLogger("bof.report")

CAPTIONS = {
    "figure1": "Figure 1. Accuracy against training and inference throughput (images/s on this machine), baseline and all freebies: the freebies cost nothing at inference.",
    "figure2": "Figure 2. Mixup as image classification uses it (0.1 : 0.9, both images resized).",
    "figure3": "Figure 3. Geometry-preserving detection mixup: both images keep their geometry, boxes keep their weights.",
    "figure4": "Figure 4. Mixing-ratio distributions; red is classification's Beta(0.2, 0.2).",
    "figure5": "Figure 5. The elephant in the room: baseline (top) and mixup-trained (middle) {detector} while an object of an absent class slides across the image; bottom: mean score of the original objects.",
    "figure6a": "Figure 6a. Cosine and step learning-rate schedules with warmup (this preset's {detector} settings).",
    "figure6b": "Figure 6b. Validation mAP during training, step vs cosine schedule.",
    "figure7": "Figure 7. Example detections of the freebies-trained {detector}.",
    "figure8": "Figure 8. Per-category AP gain of all freebies over the baseline, YOLOv3 (red: gain, blue: drop).",
    "figure9": "Figure 9. Per-category AP gain of all freebies over the baseline, Faster R-CNN (red: gain, blue: drop).",
}


def _attempt(name: str, make, missing: list[str]) -> list[Path]:
    """Draw one figure; a figure whose inputs are missing is listed, not fatal."""
    try:
        made = make()
    except FileNotFoundError as error:
        missing.append(f"{name}: {error.filename} is missing")
        log.warning("%s skipped: %s is missing", name, error.filename)
        return []
    return made if isinstance(made, list) else [made]


def provenance(preset: Preset) -> dict:
    runs = [
        json.loads(path.read_text())
        for path in (Path(run_dir(preset, job)) / "run.json" for job in jobs(preset))
        if path.exists()
    ]
    commits = Counter(f"{r['git']['commit']}{' (dirty)' if r['git']['dirty'] else ''}" for r in runs if r.get("git"))
    return {
        "runs": len(runs),
        "expected_runs": len(jobs(preset)),
        "commits": dict(commits),
        "versions": runs[0]["versions"] if runs else {},
        "devices": sorted({r["device"] for r in runs}),
        "train_hours": sum(r["wall_seconds"] for r in runs) / 3600,
    }


def make_report(preset: Preset) -> Path:
    results = Path(preset.results)
    tables_folder, figures_folder = results / "tables", results / "figures"
    missing: list[str] = []
    table_paths = {name: write_table(preset, name, tables_folder) for name in preset.tables}
    check = results / "data" / "check_train.json"
    train_images = json.loads(check.read_text())["images"] if check.exists() else 1
    available = figure_cells(preset)
    label = figures.DETECTOR_LABELS[figure_detector(preset) or "yolov3"]
    data = results / "figure_data"
    made = []
    if "figure1" in available:
        made += _attempt("figure 1", lambda: figures.figure1(preset, data / "figure1.json", figures_folder), missing)
    made += _attempt("figures 2-4", lambda: figures.figures_2_to_4(preset, figures_folder), missing)
    if "figure5" in available:
        made += _attempt("figure 5", lambda: figures.figure5(data / "figure5.json", figures_folder), missing)
    if "figure6" in available:
        made += _attempt("figure 6", lambda: figures.figure6(preset, figures_folder, train_images), missing)
    if "figure7" in available:
        made += _attempt("figure 7", lambda: figures.figure7(data / "figure7.json", figures_folder, label), missing)
    for name in ("figure8", "figure9"):
        if name in available:
            made += _attempt(name, lambda name=name: figures.figure_categories(preset, name, figures_folder), missing)

    facts = provenance(preset)
    lines = [
        f"# Bag of Freebies, reproduced: preset `{preset.name}`",
        "",
        f"Seeds: {preset.seeds}. Dataset: {preset.dataset['kind']} at `{preset.dataset['root']}`. "
        f"Runs: {facts['runs']} of {facts['expected_runs']} finished ({facts['train_hours']:.2f} h of training).",
        "",
        "Provenance: git "
        + ", ".join(f"`{c}` ({n} runs)" for c, n in facts["commits"].items())
        + "; "
        + ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v)
        + "; devices: "
        + ", ".join(facts["devices"])
        + ".",
        "",
        "Numbers are percentages. Δ is the difference to the row's baseline (paired by seed, with a 95 % t-interval when",
        "several seeds ran); the paper's values are those it reports, on the real datasets at full scale.",
        "",
    ]
    lines += [summary_markdown(preset), "", convergence_markdown(preset), ""]
    if left_out(preset):
        lines += [left_out_markdown(preset), ""]
    if missing:
        lines += ["**Missing inputs** (these parts are left out):", "", *[f"- {m}" for m in missing], ""]
    for paths in table_paths.values():
        lines += [
            paths["md"].read_text(),
            f"([LaTeX]({paths['tex'].relative_to(results)}), [CSV]({paths['csv'].relative_to(results)}))",
            "",
        ]
    for path in made:
        caption = CAPTIONS.get(path.stem, path.stem).replace("{detector}", label)
        lines += [f"![{path.stem}]({path.relative_to(results)})", "", caption, ""]
        if path.stem == "figure5":
            lines += [figures.figure5_summary(data / "figure5.json"), ""]
    report = results / "REPORT.md"
    atomic_write_text(report, "\n".join(lines))
    atomic_write_json(results / "summary.json", summary(preset))
    atomic_write_json(results / "val_curves.json", validation_curves(preset))
    return report


def summary(preset: Preset) -> dict:
    """The tables' numbers (our mean per row) and the reproduction counts, for ``dvc metrics``."""
    out = {"reproduction": counts(reproduction_frame(preset))}
    for name in preset.tables:
        frame = table_frame(preset, name)
        out[name] = {
            row.model: (None if row.ours is None or row.ours != row.ours else round(row.ours, 4))
            for row in frame.itertuples()
        }
    return out


def validation_curves(preset: Preset) -> list[dict]:
    """Every run's validation metric by epoch in one long table, for `dvc plots`."""
    rows = []
    for job in jobs(preset):
        path = Path(run_dir(preset, job)) / "val_curve.json"
        if path.exists():
            for point in json.loads(path.read_text()):
                rows.append(
                    {
                        "run": f"{job.detector}/{job.combo}",
                        "seed": job.seed,
                        "epoch": point["epoch"],
                        "value": 100 * point["value"] if point["value"] is not None else None,
                    }
                )
    return rows
