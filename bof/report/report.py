"""``results/<preset>/REPORT.md``: every table and figure with the preset, seeds and provenance,
regenerated from metrics and saved detections in seconds, without training anything."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from bof.errors import BofError
from bof.io import atomic_write_json, atomic_write_text, read_json
from bof.pipeline.matrix import (
    Preset,
    figure_data_targets,
    figure_detector,
    jobs,
    left_out,
    metric_targets,
    record_path,
    record_targets,
    report_figures,
)
from bof.report import figures
from bof.report.budget import budget_markdown, trend_frame
from bof.report.summary import (
    control_frame,
    control_markdown,
    convergence_markdown,
    counts,
    left_out_markdown,
    replication_frame,
    reproduction_frame,
    seed_list,
    summary_markdown,
)
from bof.report.tables import table_frame, write_table

log = logging.getLogger("bof.report")

CAPTIONS = {
    "figure1": "Figure 1. Accuracy against training throughput (left: each run's own images/s, seed means) and inference throughput (right: the models timed in one process over the first test images after an untimed warm-up, in repeats whose order alternates between the models; points: median of the repeats, bars: their interquartile range; device and numbers below), baseline and all freebies. The freebies cost nothing at inference because they change training only: each freebies model has its baseline's architecture, the same state-dict tensors with the same shapes (checked below). That identity, not the timing, is the evidence; the bars show how much timings move on this machine.",
    "figure2": "Figure 2. Mixup as image classification uses it (0.1 : 0.9, both images resized).",
    "figure3": "Figure 3. Geometry-preserving detection mixup: both images keep their geometry, boxes keep their weights.",
    "figure4": "Figure 4. Mixing-ratio distributions; red is classification's Beta(0.2, 0.2).",
    "figure5": "Figure 5. The elephant in the room: {detector} trained without mixup (top) and with it (middle), two runs identical but for mixup, while an object of an absent class slides across the image; bottom: mean score of the original objects.",
    "figure6a": "Figure 6a. Cosine and step learning-rate schedules with warmup (this preset's {detector} settings).",
    "figure6b": "Figure 6b. Validation mAP during training, step vs cosine schedule.",
    "figure7": "Figure 7. Example detections of the freebies-trained {detector}.",
    "figure8": "Figure 8. Per-category AP gain of all freebies over the baseline, YOLOv3 (red: gain, blue: drop).",
    "figure9": "Figure 9. Per-category AP gain of all freebies over the baseline, Faster R-CNN (red: gain, blue: drop).",
    "budget": "Each freebie's Δ over the row it stacks on against the training budget (epochs, log scale): mean over seeds with its paired 95 % t-interval; dashed red: the paper's Δ for the same step; black: 0.",
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
    """Which code, versions and machines produced the runs (from each run's ``run.json``)."""
    runs = [
        read_json(path)
        for path in (Path(record_path(preset, job, "run.json")) for job in jobs(preset))
        if path.exists()
    ]
    commits = Counter(f"{r['git']['commit']}{' (dirty)' if r['git']['dirty'] else ''}" for r in runs if r.get("git"))
    machines = Counter(_machine(r) for r in runs)
    return {
        "runs": len(runs),
        "expected_runs": len(jobs(preset)),
        "commits": dict(commits),
        "versions": runs[0]["versions"] if runs else {},
        "machines": dict(machines),
        "train_hours": sum(r["wall_seconds"] for r in runs) / 3600,
        "finished": max((r["finished"] for r in runs if r.get("finished")), default=None),
    }


def _machine(run: dict) -> str:
    """``host: device`` with the CPU's model and core count where the run recorded them."""
    machine = run.get("machine") or {}
    details = ", ".join(
        part for part in (machine.get("cpu"), f"{machine['cores']} cores" if machine.get("cores") else None) if part
    )
    return f"{run.get('host', 'unknown host')}: {run['device']}" + (f" ({details})" if details else "")


def halves(preset: Preset) -> list[Preset]:
    """The independent sets of seeds the report reads: ``seeds`` always, and ``replication_seeds`` when
    every metrics file of that set is there (a set half run would make the pooled numbers a mix)."""
    found = [preset.with_seeds(preset.seed_halves[0])]
    for seeds in preset.seed_halves[1:]:
        half = preset.with_seeds(seeds)
        if all(Path(path).exists() for path in metric_targets(half)):
            found.append(half)
    return found


def pooled(found: list[Preset]) -> Preset:
    return found[0].with_seeds([seed for half in found for seed in half.seeds])


class NoResults(BofError):
    """``bof report`` found no metrics at all for the preset: nothing to tabulate, nothing written."""


def require_results(preset: Preset) -> None:
    """Refuse a preset with no metrics at all: nothing to tabulate, nothing written."""
    results = Path(preset.results)
    if not any(Path(path).exists() for path in metric_targets(preset)):
        raise NoResults(
            f"{results}: no results of preset '{preset.name}' to report (none of its {len(metric_targets(preset))} "
            f"metrics files exists, e.g. {metric_targets(preset)[0]}); run the pipeline first (`make run PRESET="
            f"{preset.name}`), or use a preset whose results are shipped (`make figures PRESET=mini`). Nothing was written."
        )


def make_report(preset: Preset) -> Path:
    """Tables, figures, REPORT.md, summary.json and val_curves.json of ``preset``, from its
    ``eval/`` and ``figure_data/`` folders alone (what git ships): no dataset, no checkpoint.
    All or nothing: the set is rendered into a staging folder first and moved into place only
    when complete, so a damaged input leaves the previous report whole."""
    results = Path(preset.results)
    require_results(pooled(halves(preset)))
    results.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=results))
    try:
        render_report(preset, staging)
        install_report(staging, results)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results / "REPORT.md"


def install_report(staging: Path, results: Path) -> list[Path]:
    """Move a rendered report set into ``results``, file by file, each with one rename (the
    staging folder is inside ``results``: the same file system)."""
    if not Path(staging).is_dir():
        raise BofError(f"{staging}: no rendered report set there (`bof report --render-to` writes one)")
    installed = []
    for source in sorted(path for path in Path(staging).rglob("*") if path.is_file()):
        target = Path(results) / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        installed.append(target)
    return installed


def render_report(preset: Preset, out: Path) -> Path:
    """Write the report set of ``preset`` into ``out`` (REPORT.md's links are relative to it).
    The numbers pool the seeds of every complete set (``halves``)."""
    out = Path(out)
    sets = halves(preset)
    partial = [seeds for seeds in preset.seed_halves[1:] if seeds not in [half.seeds for half in sets]]
    preset = pooled(sets)
    require_results(preset)
    tables_folder, figures_folder = out / "tables", out / "figures"
    missing: list[str] = []
    table_paths = {name: write_table(preset, name, tables_folder) for name in preset.tables}
    label = figures.DETECTOR_LABELS[figure_detector(preset) or "yolov3"]
    data = Path(preset.results) / "figure_data"
    made = draw_figures(preset, data, figures_folder, label, missing)
    facts = provenance(preset)
    lines = [f"# Bag of Freebies, reproduced: preset `{preset.name}`", ""]
    budget = budget_markdown(preset)
    if budget:  # a budget study answers its question first
        lines += [budget, ""]
        if any(path.stem == "budget" for path in made):
            lines += ["![budget](figures/budget.png)", "", CAPTIONS["budget"], ""]
    lines += [
        f"Seeds: {seeds_sentence(sets, partial)} Dataset: {preset.dataset.kind} at `{preset.dataset.root}`. "
        f"Runs: {facts['runs']} of {facts['expected_runs']} finished ({facts['train_hours']:.2f} h of training).",
        "",
        *[provenance_line(half, label=len(sets) > 1) for half in sets],
        "",
        statistics_note(preset, sets),
        "",
    ]
    lines += [summary_markdown(preset, sets), ""]
    if not control_frame(preset, sets).empty:
        lines += [control_markdown(preset, sets), ""]
    lines += [convergence_markdown(preset), ""]
    if left_out(preset):
        lines += [left_out_markdown(preset), ""]
    if missing:
        lines += ["**Missing inputs** (these parts are left out):", "", *[f"- {m}" for m in missing], ""]
    for paths in table_paths.values():
        lines += [
            paths["md"].read_text(),
            f"([LaTeX]({paths['tex'].relative_to(out)}), [CSV]({paths['csv'].relative_to(out)}))",
            "",
        ]
    for path in (path for path in made if path.stem != "budget"):  # the budget figure opens the report
        caption = CAPTIONS.get(path.stem, path.stem).replace("{detector}", label)
        lines += [f"![{path.stem}]({path.relative_to(out)})", "", caption, ""]
        if path.stem == "figure1":
            lines += [figures.figure1_summary(data / "figure1.json"), ""]
        if path.stem == "figure5":
            lines += [figures.figure5_summary(data / "figure5.json"), ""]
    report = out / "REPORT.md"
    atomic_write_text(report, "\n".join(lines))
    atomic_write_json(out / "summary.json", summary(preset, sets))
    atomic_write_json(out / "val_curves.json", validation_curves(preset))
    return report


def draw_figures(preset: Preset, data: Path, folder: Path, label: str, missing: list[str]) -> list[Path]:
    """The figures ``bof report`` draws for the preset (matrix.report_figures) from its figure
    data; one whose inputs are missing is left out and named in ``missing``."""
    makers = {  # the first figure of each group drawn together
        "figure1": ("figure 1", lambda: figures.figure1(preset, data / "figure1.json", folder)),
        "figure2": ("figures 2-4", lambda: figures.figures_2_to_4(data / "figure2.json", folder)),
        "figure5": ("figure 5", lambda: figures.figure5(data / "figure5.json", folder)),
        "figure6a": ("figure 6", lambda: figures.figure6(preset, folder)),
        "figure7": ("figure 7", lambda: figures.figure7(data / "figure7.json", folder, label)),
        "figure8": ("figure8", lambda: figures.figure_categories(preset, "figure8", folder)),
        "figure9": ("figure9", lambda: figures.figure_categories(preset, "figure9", folder)),
        "budget": ("the budget figure", lambda: figures.figure_budget(preset, folder)),
    }
    made = []
    for name in report_figures(preset):
        if name in makers:
            made += _attempt(*makers[name], missing)
    return made


def seeds_sentence(sets: list[Preset], partial: list[list[int]]) -> str:
    """Which seeds the numbers pool, set by set, and a declared set left out because it is incomplete."""
    names = ["`make run`", "`make replicate`"]
    text = "; ".join(f"{seed_list(half)} ({names[k]})" for k, half in enumerate(sets)) + (
        f", pooled: {sum(len(half.seeds) for half in sets)} seeds." if len(sets) > 1 else "."
    )
    for seeds in partial:
        text += f" The replication seeds {', '.join(map(str, seeds))} are incomplete (`make replicate`) and not used."
    return text


def provenance_line(preset: Preset, *, label: bool) -> str:
    facts = provenance(preset)
    return (
        (f"Seeds {seed_list(preset)}: " if label else "Provenance (from each run's `run.json`): ")
        + "trained by git commit "
        + ", ".join(f"`{c}` ({n} runs)" for c, n in facts["commits"].items())
        + "; "
        + ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v)
        + "; on "
        + ", ".join(f"{m} ({n} runs)" for m, n in facts["machines"].items())
        + (f"; last run finished {facts['finished']}" if facts["finished"] else "")
        + "."
        + ("  " if label else "")  # a Markdown line break: one line per set of seeds, one paragraph
    )


def statistics_note(preset: Preset, sets: list[Preset] | None = None) -> str:
    """What the numbers and intervals are, and what 95 % per verdict implies over several verdicts."""
    sets = sets or [preset]
    seeds = len(preset.seeds)
    distinct = counts(reproduction_frame(preset))["measured"]
    interval = (
        f"a two-sided 95 % Student-t interval of that mean ({seeds} seeds, {seeds - 1} degrees of freedom)"
        if seeds > 1
        else "no interval (one seed)"
    )
    replication = (
        f" The seeds are two independent sets ({' and '.join(seed_list(half) for half in sets)}; they share the dataset"
        " and the pretrained backbones): a verdict stands only when each set's own mean Δ has the same sign, and is"
        " *not replicated* otherwise, whatever the pooled interval says."
        if len(sets) == 2
        else ""
    )
    return (
        "Numbers are percentages (VOC07 mAP@0.5 or COCO AP@[.5:.95] on the preset's test split). Each Δ is the mean over"
        f" the seeds of the difference between a row and its baseline trained with the same seed; the bracket is {interval}."
        + replication
        + f" Every verdict is its own 95 % test: if no trick changed anything, the {distinct} distinct deltas here would"
        f" still give about {0.05 * distinct:.2f} 'significant' verdicts by chance alone (at least one with probability"
        f" {100 * (1 - 0.95**distinct):.0f} %), so one verdict is weak evidence and a verdict another set of seeds does"
        " not repeat is noise"
        + ("; asking both sets to point the same way makes such a chance verdict rarer" if len(sets) == 2 else "")
        + ". The paper's values are those it reports, on the real datasets at full scale."
    )


def incomplete(preset: Preset) -> list[str]:
    """What the preset's results lack: runs (of every set of seeds it names) without their records or
    metrics, figures without data."""
    found = []
    for k, seeds in enumerate(preset.seed_halves):
        half = preset.with_seeds(seeds)
        wanted = (*metric_targets(half), *record_targets(half), *(figure_data_targets(half) if k == 0 else ()))
        gaps = [path for path in wanted if not Path(path).exists()]
        if gaps:
            how = "make run" if k == 0 else "make replicate: the shipped results rest on both sets"
            found.append(f"seeds {seed_list(half)}: {len(gaps)} files missing, e.g. {gaps[0]} ({how})")
    return found


def summary(preset: Preset, sets: list[Preset] | None = None) -> dict:
    """The tables' numbers (our mean per row), the reproduction counts (pooled, and of each set of
    seeds alone) and the controls' deltas, for ``dvc metrics``."""
    sets = sets or [preset]
    out = {
        "seeds": preset.seeds,
        "reproduction": counts(replication_frame(preset, sets)),
        "reproduction_by_seeds": {seed_list(half): counts(reproduction_frame(half)) for half in sets},
    }
    controls = control_frame(preset, sets)
    if not controls.empty:
        out["controls"] = {
            f"{row.control}: {row.comparison}": {
                "delta": _rounded(row.delta),
                "ci": [_rounded(row.delta_ci_low), _rounded(row.delta_ci_high)],
                "seeds": int(row.seeds),
            }
            for row in controls.itertuples()
        }
    if preset.budgets:
        out["budget"] = [
            {
                "table": row.table,
                "freebie": row.freebie,
                "delta_by_epochs": {str(k): _rounded(v) for k, v in row.deltas.items()},
                "change": _rounded(row.change),
                "change_ci": [_rounded(row.change_ci_low), _rounded(row.change_ci_high)],
                "trend": row.trend,
                "last_ci": [_rounded(row.last_ci_low), _rounded(row.last_ci_high)],
                "against_zero": row.last_side,
            }
            for row in trend_frame(preset).itertuples()
        ]
    for name in preset.tables:
        frame = table_frame(preset, name)
        out[name] = {
            row.model: (None if row.ours is None or row.ours != row.ours else round(row.ours, 4))
            for row in frame.itertuples()
        }
    return out


def _rounded(value: float | None) -> float | None:
    """A number for JSON: None for a missing one (pandas makes it NaN, which JSON cannot hold)."""
    return None if value is None or value != value else round(float(value), 4)


def validation_curves(preset: Preset) -> list[dict]:
    """Every run's validation metric by epoch in one long table, for `dvc plots`."""
    rows = []
    for job in jobs(preset):
        path = Path(record_path(preset, job, "val_curve.json"))
        if path.exists():
            for point in read_json(path):
                rows.append(
                    {
                        "run": f"{job.detector}/{job.combo}",
                        "seed": job.seed,
                        "series": f"{job.detector}/{job.combo} seed {job.seed}",
                        "epoch": point["epoch"],
                        "value": 100 * point["value"] if point["value"] is not None else None,
                    }
                )
    return rows
