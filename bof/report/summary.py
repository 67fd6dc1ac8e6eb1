"""What reproduced: each of the paper's deltas beside ours, and the count a reader wants first.

A delta *reproduces in sign* when ours has the paper's sign, and is *significant* when, in
addition, its paired 95 % t-interval over seeds lies entirely on that side of zero. With one
seed there is no interval, so nothing can be significant. When the preset's results hold two
independent sets of seeds (``seeds`` and ``replication_seeds``), the verdict is the pooled
seeds', and it stands only if each half's own mean delta points the same way: otherwise it is
*not replicated*, whatever the pooled interval says.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bof.io import read_json
from bof.pipeline.matrix import Cell, Job, Preset, cell_backbone, controls, left_out, pretrain_config, record_path
from bof.report.tables import interval, paired_deltas, table_frame, table_rows

# A run counts as converged when its validation metric moved less than this many points, up or
# down, over the last quarter of its training (issue 11's "flat over the last quarter", a number)...
FLAT_GAIN = 1.0
# ...and it learnt something: it ended at this many points (%) or more. Random boxes score ~0 mAP;
# a detector below 5 % has learnt next to nothing, and a flat curve there means stuck.
LEARNT_MIN = 5.0

VERDICTS = {
    "significant": "reproduced: same sign, interval excludes 0",
    "sign": "same sign, interval includes 0",
    "opposite": "opposite sign, interval includes 0",
    "opposite-significant": "opposite sign, interval excludes 0",
    "missing": "not run",
    "duplicate": "the same runs as {same_runs_as}: counted once",
    "not-replicated": "not replicated: the two sets of seeds do not point the same way",
    "half-missing": "not replicated: one set of seeds lacks this run",
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
    """One row per paper delta (every non-baseline row with a paper value) of the preset's tables.
    A row measured by the same pair of runs as an earlier one (a detector ``same_as`` another, or a
    cell two tables share with the same baseline) is the same experiment: its verdict is
    ``duplicate``, naming the first, and it is not counted again."""
    records, first_of = [], {}
    for name in preset.tables:
        for row, cells in zip(table_frame(preset, name).itertuples(), table_rows(preset, name), strict=True):
            if row.is_baseline or not _present(row.paper_delta):
                continue
            label = f"{name} {row.model}"
            first = first_of.setdefault((row.run, row.baseline_run), label)
            records.append(
                {
                    "table": name,
                    "model": row.model,
                    "paper_delta": row.paper_delta,
                    "delta": row.delta,
                    "delta_ci_low": row.delta_ci_low,
                    "delta_ci_high": row.delta_ci_high,
                    "seeds": row.seeds,
                    "verdict": "duplicate"
                    if first != label
                    else verdict(row.paper_delta, row.delta, row.delta_ci_low, row.delta_ci_high),
                    "same_runs_as": None if first == label else first,
                    "confound": pretraining_confound(preset, cells.cell, cells.baseline),
                }
            )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "table",
            "model",
            "paper_delta",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
            "seeds",
            "verdict",
            "same_runs_as",
            "confound",
        ],
    )


def pretraining_confound(preset: Preset, cell: Cell, baseline: Cell) -> str | None:
    """What else differs between a row and its baseline when one has the mixup-pretrained backbone:
    the preset's mixup twin may pretrain longer (GluonCV's did: 200 epochs against 120), so the
    delta measures mixup in pretraining and a longer pretraining together. Or the other way: the
    row asked for a mixup-pretrained backbone and has the published one (nobody publishes those)."""
    if "mixup" in (cell.substitutes, baseline.substitutes):
        return "no mixup in pretraining: both start from the published backbone (none is published with mixup)"
    backbone = cell_backbone(preset, cell)
    if cell.pretrain_mixup == baseline.pretrain_mixup or backbone is None:
        return None
    plain, mixed = (pretrain_config(preset, backbone, pretraining).epochs for pretraining in ("plain", "mixup"))
    if plain == mixed:
        return None
    control = any(c.replaces == cell and c.plain == baseline for name in preset.tables for c in controls(preset, name))
    return f"the mixup backbone also pretrained {mixed} epochs, the plain one {plain}" + (
        " (the pretraining-length control below separates them)" if control else ""
    )


def replication_frame(pooled: Preset, halves: list[Preset]) -> pd.DataFrame:
    """``reproduction_frame`` of the pooled seeds, with each half's own delta, interval and verdict
    (``half<k>_...``). With two halves, a verdict whose halves' mean deltas do not have one sign (or
    whose half lacks a number) becomes ``not-replicated``: a direction one set of seeds does not
    repeat is not a finding, however narrow the pooled interval."""
    key = ["table", "model"]
    frame = reproduction_frame(pooled)
    for k, half in enumerate(halves):
        own = reproduction_frame(half)[[*key, "delta", "delta_ci_low", "delta_ci_high", "verdict", "seeds"]]
        frame = frame.merge(own.add_prefix(f"half{k}_").rename(columns={f"half{k}_{c}": c for c in key}), on=key)
    if len(halves) == 2:
        for index, row in frame.iterrows():
            if row.verdict in ("missing", "duplicate"):
                continue
            if not (_present(row.half0_delta) and _present(row.half1_delta)):
                frame.at[index, "verdict"] = "half-missing"
            elif not _same_way(row.half0_delta, row.half1_delta):
                frame.at[index, "verdict"] = "not-replicated"
    return frame


def _same_way(first: float | None, second: float | None) -> bool:
    """Whether two sets of seeds' mean deltas are both there and have one sign (a 0 has none)."""
    return _present(first) and _present(second) and first * second > 0


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """Distinct experiments only: a ``duplicate`` row is neither a delta nor a measurement."""
    frame = frame[frame["verdict"] != "duplicate"]
    measured = frame[frame["verdict"] != "missing"]
    return {
        "deltas": len(frame),
        "measured": len(measured),
        "same_sign": int(measured["verdict"].isin(["significant", "sign"]).sum()),
        "significant": int((measured["verdict"] == "significant").sum()),
        "opposite_significant": int((measured["verdict"] == "opposite-significant").sum()),
        "not_replicated": int(measured["verdict"].isin(["not-replicated", "half-missing"]).sum()),
    }


def _number(value: float | None, sign: bool = True) -> str:
    return "—" if not _present(value) else (f"{value:+.2f}" if sign else f"{value:.2f}")


def _delta(delta: float | None, low: float | None, high: float | None) -> str:
    return _number(delta) + (f" [{_number(low)}, {_number(high)}]" if _present(low) else "")


def _half_cells(row, shown: int) -> str:
    """The first ``shown`` sets of seeds' own Δ [95% CI], as Markdown cells."""
    columns = ("delta", "delta_ci_low", "delta_ci_high")
    return "".join(f" {_delta(*(getattr(row, f'half{k}_{c}') for c in columns))} |" for k in range(shown))


def seed_list(preset: Preset) -> str:
    return ", ".join(str(seed) for seed in preset.seeds)


def headline(n: dict[str, int], seeds: int, *, replicated: bool) -> str:
    """The count a reader wants first, with what its verdicts rest on."""
    if seeds <= 1:
        test = "one seed: no interval, nothing can be significant"
    elif replicated:
        test = f"paired 95 % interval over the {seeds} seeds pooled excludes 0, and each set of seeds alone points the same way"
    else:
        test = f"paired 95 % interval over {seeds} seeds excludes 0"
    return (
        f"**{n['same_sign']} of {n['measured']} of the paper's deltas reproduced in sign, {n['significant']} significant** "
        f"({test}); {n['opposite_significant']} significantly opposite"
        + (
            f"; {n['not_replicated']} not replicated (the two sets of seeds do not point the same way)"
            if replicated
            else ""
        )
        + (f"; {n['deltas'] - n['measured']} not run" if n["measured"] < n["deltas"] else "")
        + "."
    )


def summary_markdown(pooled: Preset, halves: list[Preset] | None = None) -> str:
    """The headline sentence and one line per delta, for the top of REPORT.md. ``halves``: the
    independent sets of seeds ``pooled`` is made of (one: no replication check)."""
    halves = halves or [pooled]
    frame = replication_frame(pooled, halves)
    shown = halves if len(halves) == 2 else []  # each set's own column, beside the pooled one
    seeds = int(max(frame["seeds"], default=0))
    lines = ["## What reproduced", "", headline(counts(frame), seeds, replicated=bool(shown)), ""]
    lengths = sorted({table.epochs for table in pooled.tables.values() if table.epochs is not None})
    if lengths:  # a budget study measures each paper delta once per training length
        parts = []
        for epochs in lengths:
            n = counts(frame[frame["table"].isin([name for name, t in pooled.tables.items() if t.epochs == epochs])])
            parts.append(
                f"{epochs} epochs: {n['same_sign']} of {n['measured']} in sign, {n['significant']} significant,"
                f" {n['opposite_significant']} significantly opposite"
                + (f", {n['not_replicated']} not replicated" if shown else "")
            )
        lines += [
            "A budget table's paper deltas are measured once per training length, so the count above holds"
            " each of them once per length. By length: " + "; ".join(parts) + ".",
            "",
        ]
    if shown:
        lines += [
            "Each set of seeds alone, as `make run` gives it: "
            + "; ".join(
                f"seeds {seed_list(half)}: "
                + headline(counts(reproduction_frame(half)), len(half.seeds), replicated=False).rstrip(".")
                for half in halves
            ).replace("**", "")
            + ".",
            "",
        ]
    else:
        replication = pooled.seed_halves[1] if len(pooled.seed_halves) > 1 else None
        lines += [
            f"These are the verdicts of seeds {seed_list(pooled)} alone"
            + (
                f"; the preset's second set of seeds ({', '.join(map(str, replication))}, `make replicate`) has not"
                " run here, so no verdict is checked against another set."
                if replication
                else "."
            ),
            "",
        ]
    set_columns = "".join(f" seeds {seed_list(half)} Δ [95% CI] |" for half in shown)
    lines += [
        f"| table | row | paper Δ | ours Δ [95% CI] |{set_columns} verdict | also differs |",
        "|---|---|---:|---:|" + "---:|" * len(shown) + "---|---|",
    ]
    for row in frame.itertuples():
        said = VERDICTS[row.verdict].format(same_runs_as=row.same_runs_as)
        lines.append(
            f"| {row.table} | {row.model} | {_number(row.paper_delta)} |"
            f" {_delta(row.delta, row.delta_ci_low, row.delta_ci_high)} |{_half_cells(row, len(shown))} {said}"
            f" | {row.confound if isinstance(row.confound, str) else '—'} |"
        )
    return "\n".join(lines) + "\n"


METRIC_NAMES = {"coco": "COCO AP", "voc07": "VOC07 mAP"}


def control_frame(pooled: Preset, halves: list[Preset]) -> pd.DataFrame:
    """For each control: what the longer pretraining does alone, what mixup in pretraining does at
    equal length, and both together (the paper's comparison), pooled and per half."""
    records = []
    for name in pooled.tables:
        metric = pooled.tables[name].metric
        for control in controls(pooled, name):
            comparisons = (
                ("longer pretraining alone", control.cell, control.plain),
                ("mixup in pretraining at equal length", control.replaces, control.cell),
                ("both, as the table compares them", control.replaces, control.plain),
            )
            for what, cell, baseline in comparisons:
                record = {"table": name, "metric": metric, "control": control.name, "comparison": what}
                record["run"], record["baseline_run"] = (f"{c.detector}/{c.combo}" for c in (cell, baseline))
                for prefix, preset in [("", pooled)] + [(f"half{k}_", half) for k, half in enumerate(halves)]:
                    deltas = paired_deltas(preset, cell, baseline, metric)
                    low, high = interval(deltas)
                    record |= {
                        f"{prefix}delta": sum(deltas) / len(deltas) if deltas else None,
                        f"{prefix}delta_ci_low": low,
                        f"{prefix}delta_ci_high": high,
                        f"{prefix}seeds": len(deltas),
                    }
                records.append(record)
    return pd.DataFrame.from_records(records)


def control_markdown(pooled: Preset, halves: list[Preset] | None = None) -> str:
    """The pretraining-length control: whether a "+Mixup backbone" delta is mixup or length."""
    halves = halves or [pooled]
    frame = control_frame(pooled, halves)
    if frame.empty:
        return ""
    shown = halves if len(halves) == 2 else []
    lines = [
        "## Control: mixup in pretraining, or a longer pretraining?",
        "",
        "The mixup backbone pretrains longer than the plain one here (as GluonCV's did), so the tables' \"+Mixup\""
        " backbone rows change two things. The control row's backbone is the plain one pretrained as long (the mixup"
        " twin's recipe without mixup); everything else is its column's. Paired Δ by seed, in the table's metric,"
        + (" pooled and per set of seeds:" if shown else " over its seeds:"),
        "",
        "| control | comparison | runs | metric | Δ [95% CI] |"
        + "".join(f" seeds {seed_list(half)} |" for half in shown),
        "|---|---|---|---|---:|" + "---:|" * len(shown),
    ]
    for row in frame.itertuples():
        lines.append(
            f"| {row.control} | {row.comparison} | {row.run} − {row.baseline_run} | {METRIC_NAMES[row.metric]} |"
            f" {_delta(row.delta, row.delta_ci_low, row.delta_ci_high)} |{_half_cells(row, len(shown))}"
        )
    lines += ["", control_reading(frame, bool(shown))]
    return "\n".join(lines) + "\n"


def _excludes_zero(low: float | None, high: float | None) -> bool:
    return _present(low) and _present(high) and (low > 0 or high < 0)


def control_reading(frame: pd.DataFrame, replicated: bool) -> str:
    """One sentence per control on what it shows, from its intervals (and, with two sets of seeds,
    whether both point the same way) alone."""
    sentences = []
    for control, rows in frame.groupby("control", sort=False):
        parts = []
        for row in rows.itertuples():
            if row.comparison.startswith("both"):
                continue
            metric = METRIC_NAMES[row.metric]
            same_way = not replicated or _same_way(row.half0_delta, row.half1_delta)
            if not _present(row.delta):
                parts.append(f"{row.comparison}: not run")
            elif _excludes_zero(row.delta_ci_low, row.delta_ci_high) and same_way:
                parts.append(f"{row.comparison} changes {metric} by {_number(row.delta)} points (interval excludes 0)")
            elif _excludes_zero(row.delta_ci_low, row.delta_ci_high):
                parts.append(
                    f"{row.comparison}: {_number(row.delta)} points, not replicated (the two sets of seeds do not"
                    " point the same way)"
                )
            else:
                parts.append(
                    f"{row.comparison}: {_number(row.delta)} points, an interval that includes 0 (no effect measured)"
                )
        sentences.append(f"{control}: " + "; ".join(parts) + ".")
    return " ".join(sentences)


def last_quarter_gain(curve: list[dict]) -> tuple[float | None, float | None]:
    """(final value, its gain over the last quarter of training), in points; the gain is taken
    from the last validation at or before 75 % of the epochs, None when there is none."""
    points = [(p["epoch"], 100 * p["value"]) for p in curve if p.get("value") is not None]
    if not points:
        return None, None
    last_epoch, final = points[-1]
    before = [value for epoch, value in points if epoch <= 0.75 * last_epoch]
    return final, (final - before[-1] if before else None)


def convergence_state(finals: list[float], gains: list[float]) -> str:
    """A run's convergence verdict over its seeds. *flat*: every seed moved (up or down) less than
    FLAT_GAIN points over the last quarter, and every seed learnt something (ended at
    LEARNT_MIN % or more: a detector below it has learnt next to nothing, and a flat curve
    then says it is stuck, not converged). Otherwise: *still rising* / *falling* (some seed
    moved FLAT_GAIN or more, up / down), *unsettled* (both), *learnt too little*, or *too few
    validations* (none before the last quarter)."""
    if not gains:
        return "too few validations"
    if min(finals) < LEARNT_MIN:
        return "learnt too little"
    rising, falling = max(gains) >= FLAT_GAIN, min(gains) <= -FLAT_GAIN
    if rising and falling:
        return "unsettled"
    return "still rising" if rising else "falling" if falling else "flat"


def convergence_frame(preset: Preset, *, other_rows: bool = False) -> pd.DataFrame:
    """One row per distinct baseline of the preset's tables (with ``other_rows``, per distinct
    row that is no baseline): its final validation metric and how much it moved over the last
    quarter of training (mean over seeds, and the seed that moved most, with its sign)."""
    rows = [row for name in preset.tables for row in table_rows(preset, name)]
    baselines = {row.baseline: None for row in rows}
    cells = {row.cell: None for row in rows if row.cell not in baselines} if other_rows else baselines
    records = []
    for cell in cells:
        finals, gains = [], []
        for seed in preset.seeds:
            path = Path(record_path(preset, Job(cell.detector, cell.combo, seed), "val_curve.json"))
            if path.exists():
                final, gain = last_quarter_gain(read_json(path))
                if final is not None:
                    finals.append(final)
                if gain is not None:
                    gains.append(gain)
        state = convergence_state(finals, gains)
        records.append(
            {
                "run": f"{cell.detector}/{cell.combo}",
                "seeds": len(finals),
                "final": sum(finals) / len(finals) if finals else None,
                "gain": sum(gains) / len(gains) if gains else None,
                "worst_gain": max(gains, key=abs) if gains else None,
                "state": state if finals else "not run",
                "flat": state == "flat",
            }
        )
    return pd.DataFrame.from_records(records, columns=["run", "seeds", "final", "gain", "worst_gain", "state", "flat"])


def _convergence_line(row) -> str:
    if row.seeds == 0:
        return f"| {row.run} | 0 | — | — | not run |"
    gain = "—" if row.gain is None else f"{row.gain:+.2f} ({row.worst_gain:+.2f})"
    return f"| {row.run} | {row.seeds} | {row.final:.2f} | {gain} | {row.state} |"


def convergence_markdown(preset: Preset) -> str:
    """Whether each baseline had converged (a delta on an under-trained baseline says little), and
    then whether the other rows had: a row still moving says its delta may not be its last word."""
    frame = convergence_frame(preset)
    lines = [
        "## Are the baselines converged?",
        "",
        "Validation metric (%, on the preset's validation split) at the end of training, and how much it moved over the"
        " last quarter of the epochs (mean over seeds, and in brackets the seed that moved most, with its sign). *Flat*:"
        f" every seed moved less than {FLAT_GAIN:g} point up or down, and every seed ended at {LEARNT_MIN:g} % or more"
        " (below that a model has learnt next to nothing, and a flat curve means stuck, not converged).",
        "",
        "| baseline run | seeds | final | last-quarter change (largest seed) | |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [_convergence_line(row) for row in frame.itertuples()]
    others = convergence_frame(preset, other_rows=True)
    others = others[others.seeds > 0]
    if len(others):
        lines += [
            "",
            "The other rows, the same way (a row still moving when training ends might end elsewhere with more epochs,"
            " so its delta says less than its interval suggests):",
            "",
            "| run | seeds | final | last-quarter change (largest seed) | |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [_convergence_line(row) for row in others.itertuples()]
    return "\n".join(lines) + "\n"


def left_out_markdown(preset: Preset) -> str:
    """The table rows the preset does not run (``leave_out``), so that a missing row is a stated choice."""
    rows = "; ".join(f"{name}: {', '.join(names)}" for name, names in left_out(preset).items())
    return f"**Left out by the preset** ({preset.path.name} says why): {rows}."
