"""What reproduced: each of the paper's deltas beside ours, and the count a reader wants first.

A delta *reproduces in sign* when ours has the paper's sign, and is *significant* when, in
addition, its paired 95 % t-interval over seeds lies entirely on that side of zero. With one
seed there is no interval, so nothing can be significant.
"""

from __future__ import annotations

import math

import pandas as pd

from bof.pipeline.matrix import Preset
from bof.report.tables import table_frame

VERDICTS = {
    "significant": "reproduced: same sign, interval excludes 0",
    "sign": "same sign, interval includes 0",
    "opposite": "opposite sign, interval includes 0",
    "opposite-significant": "opposite sign, interval excludes 0",
    "missing": "not run",
}


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def verdict(paper_delta: float, delta: float | None, low: float | None, high: float | None) -> str:
    if not _present(delta):
        return "missing"
    same = math.copysign(1, delta) == math.copysign(1, paper_delta) and delta != 0
    excludes_zero = _present(low) and _present(high) and (low > 0 or high < 0)
    if same:
        return "significant" if excludes_zero else "sign"
    return "opposite-significant" if excludes_zero else "opposite"


def reproduction_frame(preset: Preset) -> pd.DataFrame:
    """One row per paper delta (every non-baseline row with a paper value) of the preset's tables."""
    records = []
    for name in preset.tables:
        for row in table_frame(preset, name).itertuples():
            if row.is_baseline or not _present(row.paper_delta):
                continue
            records.append(
                {
                    "table": name,
                    "model": row.model,
                    "paper_delta": row.paper_delta,
                    "delta": row.delta,
                    "delta_ci_low": row.delta_ci_low,
                    "delta_ci_high": row.delta_ci_high,
                    "seeds": row.seeds,
                    "verdict": verdict(row.paper_delta, row.delta, row.delta_ci_low, row.delta_ci_high),
                }
            )
    return pd.DataFrame.from_records(
        records,
        columns=["table", "model", "paper_delta", "delta", "delta_ci_low", "delta_ci_high", "seeds", "verdict"],
    )


def counts(frame: pd.DataFrame) -> dict[str, int]:
    measured = frame[frame["verdict"] != "missing"]
    return {
        "deltas": len(frame),
        "measured": len(measured),
        "same_sign": int(measured["verdict"].isin(["significant", "sign"]).sum()),
        "significant": int((measured["verdict"] == "significant").sum()),
        "opposite_significant": int((measured["verdict"] == "opposite-significant").sum()),
    }


def summary_markdown(preset: Preset) -> str:
    """The headline sentence and one line per delta, for the top of REPORT.md."""
    frame = reproduction_frame(preset)
    n = counts(frame)

    def number(value, sign=True):
        return "—" if not _present(value) else (f"{value:+.2f}" if sign else f"{value:.2f}")

    seeds = int(max(frame["seeds"], default=0))
    intervals = (
        f"paired 95 % interval over {seeds} seeds excludes 0"
        if seeds > 1
        else "one seed: no interval, nothing can be significant"
    )
    lines = [
        "## What reproduced",
        "",
        f"**{n['same_sign']} of {n['measured']} of the paper's deltas reproduced in sign, {n['significant']} significant** "
        f"({intervals}); {n['opposite_significant']} significantly opposite"
        + (f"; {n['deltas'] - n['measured']} not run" if n["measured"] < n["deltas"] else "")
        + ".",
        "",
        "| table | row | paper Δ | ours Δ [95% CI] | verdict |",
        "|---|---|---:|---:|---|",
    ]
    for row in frame.itertuples():
        interval = f" [{number(row.delta_ci_low)}, {number(row.delta_ci_high)}]" if _present(row.delta_ci_low) else ""
        lines.append(
            f"| {row.table} | {row.model} | {number(row.paper_delta)} | {number(row.delta)}{interval} | {VERDICTS[row.verdict]} |"
        )
    return "\n".join(lines) + "\n"
