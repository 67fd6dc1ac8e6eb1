"""What reproduced: each of the paper's deltas beside ours, and the count a reader wants first.

A delta *reproduces in sign* when ours has the paper's sign, and is *significant* when, in
addition, its paired 95 % t-interval over seeds lies entirely on that side of zero. With one
seed there is no interval, so nothing can be significant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bof.pipeline.matrix import Job, Preset, left_out, run_dir
from bof.report.tables import table_frame, table_rows

# A baseline counts as converged when its validation mAP gained less than this many points over
# the last quarter of its training (issue 11's "flat over the last quarter", made a number).
FLAT_GAIN = 1.0

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


def last_quarter_gain(curve: list[dict]) -> tuple[float | None, float | None]:
    """(final value, its gain over the last quarter of training), in points; the gain is taken
    from the last validation at or before 75 % of the epochs, None when there is none."""
    points = [(p["epoch"], 100 * p["value"]) for p in curve if p.get("value") is not None]
    if not points:
        return None, None
    last_epoch, final = points[-1]
    before = [value for epoch, value in points if epoch <= 0.75 * last_epoch]
    return final, (final - before[-1] if before else None)


def convergence_frame(preset: Preset, *, other_rows: bool = False) -> pd.DataFrame:
    """One row per distinct baseline of the preset's tables (with ``other_rows``, per distinct
    row that is no baseline): its final validation metric and how much it still gained over the
    last quarter of training (mean and worst over seeds)."""
    rows = [row for name in preset.tables for row in table_rows(preset, name)]
    baselines = {row.baseline: None for row in rows}
    cells = {row.cell: None for row in rows if row.cell not in baselines} if other_rows else baselines
    records = []
    for cell in cells:
        finals, gains = [], []
        for seed in preset.seeds:
            path = Path(run_dir(preset, Job(cell.detector, cell.combo, seed))) / "val_curve.json"
            if path.exists():
                final, gain = last_quarter_gain(json.loads(path.read_text()))
                if final is not None:
                    finals.append(final)
                if gain is not None:
                    gains.append(gain)
        records.append(
            {
                "run": f"{cell.detector}/{cell.combo}",
                "seeds": len(finals),
                "final": sum(finals) / len(finals) if finals else None,
                "gain": sum(gains) / len(gains) if gains else None,
                "worst_gain": max(gains) if gains else None,
                "flat": bool(gains) and max(gains) < FLAT_GAIN,
            }
        )
    return pd.DataFrame.from_records(records, columns=["run", "seeds", "final", "gain", "worst_gain", "flat"])


def _convergence_line(row) -> str:
    if row.seeds == 0:
        return f"| {row.run} | 0 | — | — | not run |"
    gain = "—" if row.gain is None else f"{row.gain:+.2f} ({row.worst_gain:+.2f})"
    state = "flat" if row.flat else ("still rising" if row.gain is not None else "too few validations")
    return f"| {row.run} | {row.seeds} | {row.final:.2f} | {gain} | {state} |"


def convergence_markdown(preset: Preset) -> str:
    """Whether each baseline had converged (a delta on an under-trained baseline says little), and
    then whether the other rows had: a row still rising says its delta may not be its last word."""
    frame = convergence_frame(preset)
    lines = [
        "## Are the baselines converged?",
        "",
        f"Validation metric (%, on the preset's validation split) at the end of training, and what it gained over the last"
        f" quarter of the epochs (mean over seeds; *flat* when every seed gained less than {FLAT_GAIN:g} point).",
        "",
        "| baseline run | seeds | final | last-quarter gain (worst seed) | |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [_convergence_line(row) for row in frame.itertuples()]
    others = convergence_frame(preset, other_rows=True)
    others = others[others.seeds > 0]
    if len(others):
        lines += [
            "",
            "The other rows, the same way (a row still rising when training ends might gain more with more epochs,"
            " so its delta says less than its interval suggests):",
            "",
            "| run | seeds | final | last-quarter gain (worst seed) | |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [_convergence_line(row) for row in others.itertuples()]
    return "\n".join(lines) + "\n"


def left_out_markdown(preset: Preset) -> str:
    """The table rows the preset does not run (``leave_out``), so that a missing row is a stated choice."""
    rows = "; ".join(f"{name}: {', '.join(names)}" for name, names in left_out(preset).items())
    return f"**Left out by the preset** ({preset.path.name} says why): {rows}."
