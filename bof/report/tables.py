"""Tables 1-6 from metrics files alone: our value (mean ± std over seeds), the paper's value,
and both deltas to the row's baseline, with a 95 % t-interval for our delta when several
seeds ran. Written as Markdown, LaTeX and CSV."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bof.errors import BofError
from bof.io import read_json
from bof.pipeline.matrix import Cell, Job, Preset, controls, metric_path, table_cells


def read_metric(path: str | Path, metric: str) -> float | None:
    """The headline number in percent (VOC07 mAP or COCO AP), None when the file is missing."""
    path = Path(path)
    if not path.exists():
        return None
    report, key = read_json(path), "mAP" if metric == "voc07" else "AP"
    value = report.get(key, "missing") if isinstance(report, dict) else "missing"
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BofError(f"{path}: '{key}' is {value!r}, not a number; rerun the evaluation that writes it")
    return None if value is None else 100.0 * value


@dataclass(frozen=True)
class Row:
    name: str
    cell: Cell
    baseline: Cell
    paper: float | None
    paper_baseline: float | None


def table_rows(preset: Preset, name: str) -> list[Row]:
    """A table as a flat list of rows, each with the cell its delta is taken against."""
    table, grid = preset.tables[name], table_cells(preset, name)
    if table.kind == "rows":
        base = [row.name for row in table.rows].index(table.baseline)
        return [
            Row(row.name, cells[0], grid[base][0], row.paper, table.rows[base].paper)
            for row, cells in zip(table.rows, grid, strict=True)
        ]
    if table.kind == "pairs":
        rows = []
        orig_title, bof_title = (column.name for column in table.columns)
        for row, (orig, bof) in zip(table.rows, grid, strict=True):
            rows.append(Row(f"{row.name}: {orig_title}", orig, orig, row.baseline.paper, row.baseline.paper))
            rows.append(Row(f"{row.name}: {bof_title}", bof, orig, row.bof.paper, row.baseline.paper))
        return rows
    rows = []
    for r, row in enumerate(table.rows):
        for c, column in enumerate(table.columns):
            rows.append(
                Row(f"{row.name} / {column.name}", grid[r][c], grid[0][0], table.paper[r][c], table.paper[0][0])
            )
    # a control the paper does not have: no paper value, its delta against the same baseline
    rows += [
        Row(f"{control.name} (control)", control.cell, grid[0][0], None, None) for control in controls(preset, name)
    ]
    return rows


def _summary(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def paired_deltas(preset: Preset, cell: Cell, baseline: Cell, metric: str) -> list[float]:
    """``cell`` minus ``baseline``, seed by seed (each pair trained with the same seed), over the
    preset's seeds that have both."""
    deltas = []
    for seed in preset.seeds:
        value = read_metric(metric_path(preset, Job(cell.detector, cell.combo, seed), metric), metric)
        base = read_metric(metric_path(preset, Job(baseline.detector, baseline.combo, seed), metric), metric)
        if value is not None and base is not None:
            deltas.append(value - base)
    return deltas


def interval(deltas: list[float]) -> tuple[float | None, float | None]:
    if len(deltas) < 2:
        return None, None
    mean, sem = float(np.mean(deltas)), float(np.std(deltas, ddof=1)) / math.sqrt(len(deltas))
    half = float(stats.t.ppf(0.975, len(deltas) - 1)) * sem
    return mean - half, mean + half


def table_frame(preset: Preset, name: str) -> pd.DataFrame:
    """One row per table row: numbers, seeds and the runs they come from."""
    metric = preset.tables[name].metric
    records = []
    first_of: dict[tuple[Cell, Cell], str] = {}
    for row in table_rows(preset, name):
        # a detector declared `same_as` another trains no model of its own: its row is the same runs
        same_runs_as = first_of.setdefault((row.cell, row.baseline), row.name)
        values = [
            value
            for seed in preset.seeds
            if (value := read_metric(metric_path(preset, Job(row.cell.detector, row.cell.combo, seed), metric), metric))
            is not None
        ]
        deltas = paired_deltas(preset, row.cell, row.baseline, metric)
        mean, std = _summary(values)
        low, high = interval(deltas)
        records.append(
            {
                "model": row.name,
                "ours": mean,
                "ours_std": std,
                "seeds": len(values),
                "delta": float(np.mean(deltas)) if deltas else None,
                "delta_ci_low": low,
                "delta_ci_high": high,
                "paper": row.paper,
                "paper_delta": None
                if row.paper is None or row.paper_baseline is None
                else row.paper - row.paper_baseline,
                "is_baseline": row.cell == row.baseline,
                "run": f"{row.cell.detector}/{row.cell.combo}",
                "baseline_run": f"{row.baseline.detector}/{row.baseline.combo}",
                "same_runs_as": None if same_runs_as == row.name else same_runs_as,
            }
        )
    return pd.DataFrame.from_records(records)


def _number(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def formatted(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Human-readable columns: ``ours ± std``, ``delta [95 % CI]``, paper and paper delta."""
    label = "mAP@0.5 (VOC07)" if metric == "voc07" else "AP@[.5:.95] (COCO)"

    def ours(row) -> str:
        text = _number(row.ours)
        return text + (f" ± {row.ours_std:.2f}" if row.ours_std is not None and not math.isnan(row.ours_std) else "")

    def delta(row) -> str:
        text = _number(row.delta, sign=True)
        if row.delta_ci_low is not None and not math.isnan(row.delta_ci_low):
            text += f" [{row.delta_ci_low:+.2f}, {row.delta_ci_high:+.2f}]"
        return text

    def model(row) -> str:
        return f"{row.model} (the {row.same_runs_as} runs)" if isinstance(row.same_runs_as, str) else row.model

    return pd.DataFrame(
        {
            "Model": [model(r) for r in frame.itertuples()],
            f"ours {label}": [ours(r) for r in frame.itertuples()],
            "ours Δ [95% CI]": [delta(r) for r in frame.itertuples()],
            "paper": [_number(v) for v in frame["paper"]],
            "paper Δ": [_number(v, sign=True) for v in frame["paper_delta"]],
            "seeds": frame["seeds"],
        }
    )


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


LATEX_FOR = {"Δ": r"$\Delta$", "±": r"$\pm$", "—": "---", "–": "--", "×": r"$\times$", "−": "-", "≥": r"$\geq$"}


def _ascii_latex(text: str) -> str:
    """``text`` with its non-ASCII characters as LaTeX commands, so that pdflatex compiles it without
    inputenc or a Unicode engine; a character with no command here falls back to its ASCII letters
    (é -> e) or ``?``."""
    import unicodedata

    def plain(character: str) -> str:
        if character.isascii():
            return character
        if character in LATEX_FOR:
            return LATEX_FOR[character]
        return unicodedata.normalize("NFKD", character).encode("ascii", "ignore").decode() or "?"

    return "".join(plain(character) for character in text)


def write_table(preset: Preset, name: str, folder: Path) -> dict[str, Path]:
    """``<folder>/<name>.{md,tex,csv}``; returns the paths. The .tex is pure ASCII (Δ as ``$\\Delta$``);
    the CSV holds the numbers rounded as the Markdown shows them (2 decimals)."""
    from bof.io import atomic_write_text

    frame = table_frame(preset, name)
    table = formatted(frame, preset.tables[name].metric)
    title = preset.tables[name].title
    paths = {"md": folder / f"{name}.md", "tex": folder / f"{name}.tex", "csv": folder / f"{name}.csv"}
    atomic_write_text(paths["md"], f"**{title}**\n\n" + to_markdown(table))
    # after escape=True (which escapes _ % &), or it would escape the $ and \ of $\Delta$
    latex = table.to_latex(index=False, caption=title, label=f"tab:{name}", escape=True)
    atomic_write_text(paths["tex"], _ascii_latex(latex))
    decimals = {column: 2 for column in frame.columns if pd.api.types.is_float_dtype(frame[column])}
    atomic_write_text(paths["csv"], frame.round(decimals).to_csv(index=False))
    return paths
