"""Each freebie's delta against the training budget (a preset's ``budgets``): bug or scale?

A regulariser that hurts an under-trained model and helps a trained one shows it as a delta
that rises with the budget. Here a freebie's delta is what its row adds to the row it stacks on
(Table 3's "+ mixup" against "+ class label smoothing", seed by seed), at each training length,
with its paired 95 % t-interval; its change from the shortest to the longest budget gets a
Welch 95 % interval (the runs of two budgets are different trainings).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from bof.pipeline.matrix import Preset, table_cells
from bof.pipeline.preset import Table
from bof.report.tables import interval, paired_deltas


def budget_tables(preset: Preset) -> dict[str, list[Table]]:
    """The preset's budget copies of each table (``table3`` -> ``table3_12e``, ...), shortest first."""
    found: dict[str, list[Table]] = {}
    for table in preset.tables.values():
        if table.base is not None and table.kind == "rows":
            found.setdefault(table.base, []).append(table)
    return {base: sorted(tables, key=lambda t: t.epochs) for base, tables in found.items()}


def budget_frame(preset: Preset) -> pd.DataFrame:
    """One row per freebie and budget: its delta over the row it stacks on (mean over seeds, paired
    95 % interval), the paper's delta for the same step, and the per-seed deltas."""
    records = []
    for base, tables in budget_tables(preset).items():
        for table in tables:
            cells = {row.name: cell[0] for row, cell in zip(table.rows, table_cells(preset, table.name), strict=True)}
            for row in table.rows:
                parent = table.stacked_on(row)
                if parent is None:
                    continue
                deltas = paired_deltas(preset, cells[row.name], cells[parent.name], table.metric)
                low, high = interval(deltas)
                records.append(
                    {
                        "table": base,
                        "freebie": row.name,
                        "stacked_on": parent.name,
                        "epochs": table.epochs,
                        "delta": float(np.mean(deltas)) if deltas else None,
                        "delta_ci_low": low,
                        "delta_ci_high": high,
                        "seeds": len(deltas),
                        "deltas": deltas,
                        "paper_delta": None if row.paper is None or parent.paper is None else row.paper - parent.paper,
                    }
                )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "table",
            "freebie",
            "stacked_on",
            "epochs",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
            "seeds",
            "deltas",
            "paper_delta",
        ],
    )


def change(shorter: list[float], longer: list[float]) -> tuple[float | None, float | None, float | None]:
    """The mean of ``longer`` minus the mean of ``shorter`` with its Welch 95 % interval (scipy's;
    None where a side has fewer than two values or neither has any spread)."""
    if not shorter or not longer:
        return None, None, None
    difference = float(np.mean(longer) - np.mean(shorter))
    if len(shorter) < 2 or len(longer) < 2:
        return difference, None, None
    bounds = stats.ttest_ind(longer, shorter, equal_var=False).confidence_interval(0.95)
    low, high = float(bounds.low), float(bounds.high)
    return (difference, None, None) if math.isnan(low) or math.isnan(high) else (difference, low, high)


def _missing(value) -> bool:
    return value is None or value != value  # pandas holds a missing number as NaN


def _side(low: float | None, high: float | None, *, up: str, down: str, neither: str) -> str:
    """Which side of zero an interval lies on; "—" where there is none (fewer than two seeds)."""
    if _missing(low) or _missing(high):
        return "—"
    return up if low > 0 else down if high < 0 else neither


def trend_frame(preset: Preset) -> pd.DataFrame:
    """Per freebie: its delta at the shortest and the longest budget, the change between them
    (Welch 95 %) and what that says: *rises* / *falls* (the interval excludes 0) or *no clear
    change*; and where the longest budget's delta stands: *above 0*, *below 0* or *includes 0*."""
    frame, records = budget_frame(preset), []
    for (table, freebie), rows in frame.groupby(["table", "freebie"], sort=False):
        rows = rows.sort_values("epochs")
        first, last = rows.iloc[0], rows.iloc[-1]
        difference, low, high = change(first.deltas, last.deltas)
        records.append(
            {
                "table": table,
                "freebie": freebie,
                "paper_delta": last.paper_delta,
                "shortest": int(first.epochs),
                "longest": int(last.epochs),
                "deltas": {int(r.epochs): r.delta for r in rows.itertuples()},
                "change": difference,
                "change_ci_low": low,
                "change_ci_high": high,
                "trend": _side(low, high, up="rises", down="falls", neither="no clear change"),
                "last": last.delta,
                "last_ci_low": last.delta_ci_low,
                "last_ci_high": last.delta_ci_high,
                "last_side": _side(
                    last.delta_ci_low, last.delta_ci_high, up="above 0", down="below 0", neither="includes 0"
                ),
            }
        )
    return pd.DataFrame.from_records(records)


def _signed(value: float | None) -> str:
    return "—" if _missing(value) else f"{value:+.2f}"


def _bracket(low: float | None, high: float | None) -> str:
    return "" if _missing(low) or _missing(high) else f" [{low:+.2f}, {high:+.2f}]"


def budget_markdown(preset: Preset) -> str:
    """REPORT.md's opening answer: per freebie, does its delta rise with the budget, and where does
    it stand against zero at the longest budget."""
    trends = trend_frame(preset)
    if trends.empty:
        return ""
    budgets = sorted({epochs for row in trends.itertuples() for epochs in row.deltas})
    lines = [
        "## Each freebie's delta against the training budget",
        "",
        "Δ: what the row adds to the row it stacks on, in points, mean over the seeds of the same-seed"
        " difference, at each budget (epochs); the change from the shortest to the longest budget with its"
        " Welch 95 % interval; the longest budget's Δ with its paired 95 % interval.",
        "",
        "| table | freebie | paper Δ | "
        + " | ".join(f"Δ at {epochs}" for epochs in budgets)
        + " | change [95 % CI] | with the budget | Δ at the longest [95 % CI] | against 0 |",
        "|---|---|---:|" + "---:|" * len(budgets) + "---:|---|---:|---|",
    ]
    for row in trends.itertuples():
        lines.append(
            f"| {row.table} | {row.freebie} | {_signed(row.paper_delta)} | "
            + " | ".join(_signed(row.deltas.get(epochs)) for epochs in budgets)
            + f" | {_signed(row.change)}{_bracket(row.change_ci_low, row.change_ci_high)} | {row.trend}"
            f" | {_signed(row.last)}{_bracket(row.last_ci_low, row.last_ci_high)} | {row.last_side} |"
        )
    return "\n".join(lines)
