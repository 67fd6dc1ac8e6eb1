"""The experiment matrix: a preset (``config/<name>.yaml``) plus the table definitions
(``config/tables.yaml``) expanded into pretraining and training jobs.

Every table cell names a detector, a set of tricks relative to that detector's baseline
tricks, and whether the backbone was pretrained with mixup. Those three settle the job:
its directory name (the *combo*) is a canonical slug of the differences from the
baseline, so a combination that two tables share trains once, and ``seeds`` repeat
every job. The Snakefile asks this module for its targets and for each job's resolved
config; nothing here runs anything.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from bof.config import PretrainConfig, TrainConfig, TricksConfig, build, to_dict
from bof.data.synth.config import SynthConfig, parse_classes
from bof.data.voc import read_class_names
from bof.errors import ConfigError
from bof.evaluation.formats import voc_results_path

# the preset's JSON schema, which the Snakefile validates presets against
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class Job:
    detector: str  # canonical detector name (after `same_as`)
    combo: str
    seed: int

    @classmethod
    def of(cls, wildcards) -> Job:
        """The job a Snakemake rule's ``{detector}/{combo}/{seed}`` wildcards name."""
        return cls(wildcards.detector, wildcards.combo, int(wildcards.seed))


@dataclass(frozen=True)
class Preset:
    """A loaded preset: its YAML as a dict plus the table definitions it uses."""

    path: Path
    raw: dict
    tables: dict

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def results(self) -> str:
        return self.raw["results"]

    @property
    def seeds(self) -> list[int]:
        """The seeds the pipeline trains: ``seeds``, and ``replication_seeds`` too with ``replicate``."""
        return [seed for half in self.seed_halves[: 2 if self.raw.get("replicate") else 1] for seed in half]

    @property
    def seed_halves(self) -> list[list[int]]:
        """``seeds`` (what ``make run`` trains) and, when the preset names them, ``replication_seeds``:
        a second, independent set the report pools with the first and checks each verdict against."""
        return [list(self.raw["seeds"])] + (
            [list(self.raw["replication_seeds"])] if self.raw.get("replication_seeds") else []
        )

    def with_seeds(self, seeds: list[int]) -> Preset:
        """This preset reading exactly ``seeds``: the report's view of one half, or of both pooled (not
        for building jobs: pretraining takes the first of ``seeds``). It still names the replication
        seeds when ``seeds`` holds none of them (the first half)."""
        raw = {**self.raw, "seeds": list(seeds), "replicate": False}
        if set(seeds) & set(raw.get("replication_seeds", [])):
            raw.pop("replication_seeds")
        return Preset(self.path, raw, self.tables)

    @property
    def dataset(self) -> dict:
        return self.raw["dataset"]


def check_keys(raw: dict, path: str | Path, schema: str | Path = SCHEMA) -> None:
    """The preset ``raw`` against its JSON ``schema`` (jsonschema's best match), as one line naming
    the key: Snakemake's own validation prints the whole schema with each error. An unknown key
    is named with the keys its section knows."""
    try:
        checker = jsonschema.Draft202012Validator(yaml.safe_load(Path(schema).read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{schema}: cannot read the preset schema ({error})") from None
    error = jsonschema.exceptions.best_match(checker.iter_errors(raw))
    if error is None:
        return
    where = "".join(f"{part}." for part in error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        key = sorted(set(error.instance) - set(known))[0]
    elif error.validator == "enum" and "propertyNames" in error.schema_path:
        known, key = sorted(error.validator_value), error.instance
    else:
        raise ConfigError(f"{path}: {where.rstrip('.') or 'preset'}: {error.message}")
    raise ConfigError(f"{path}: unknown key '{where}{key}' (known: {', '.join(known)})")


def load_preset(
    path: str | Path,
    raw: dict | None = None,
    *,
    default_tables: str | Path | None = None,
    schema: str | Path | None = SCHEMA,
) -> Preset:
    """Read a preset (or take its already-loaded ``raw`` dict) and the tables it names:
    ``tables_file`` relative to the preset, else ``tables.yaml`` beside it, else ``default_tables``
    (the workflow's own, for a preset kept elsewhere). Its keys are checked against ``schema``."""
    path = Path(path)
    if raw is None:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the preset ({error})") from None
    if schema is not None:
        check_keys(raw, path, schema)
    tables_path = (path.parent / raw.get("tables_file", "tables.yaml")).resolve()
    if "tables_file" not in raw and not tables_path.exists() and default_tables is not None:
        tables_path = Path(default_tables).resolve()
    try:
        all_tables = yaml.safe_load(tables_path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{tables_path}: cannot read the table definitions ({error})") from None
    unknown = [name for name in raw["tables"] if name not in all_tables]
    if unknown:
        raise ConfigError(f"{path}: tables {unknown} are not defined in {tables_path}")
    for name in raw["tables"]:
        for row, tricks in _table_tricks(all_tables[name]):
            _check_trick_keys(tricks, TricksConfig, f"{tables_path}: {name}: {row}", "")
    overlap = sorted(set(raw["seeds"]) & set(raw.get("replication_seeds", [])))
    if overlap:
        raise ConfigError(f"{path}: replication_seeds {overlap} are also in seeds: a replication needs other seeds")
    if raw.get("replicate") and not raw.get("replication_seeds"):
        raise ConfigError(
            f"{path}: replicate asks for the replication seeds, but the preset names no replication_seeds"
        )
    preset = Preset(path, raw, {name: _leave_out(path, name, all_tables[name], raw) for name in raw["tables"]})
    figure_detector(preset)
    for name, table in preset.tables.items():
        for detector in table_detectors(table):
            if detector not in raw["detectors"]:
                raise ConfigError(f"{path}: {name} needs detector '{detector}', which the preset does not define")
    for job in jobs(preset):  # builds every config once, so a bad value fails at start
        train_config(preset, job)
    for detector in preset.raw["detectors"]:
        training_resources(preset, detector)
    for backbone in preset.raw["pretrain"]:
        pretraining_resources(preset, backbone)
    return preset


def _leave_out(path: Path, name: str, table: dict, raw: dict) -> dict:
    """``table`` without the rows the preset's ``leave_out`` names for it (a budget decision the
    preset states; REPORT.md lists what was left out)."""
    names = raw.get("leave_out", {}).get(name, [])
    unknown = [row for row in names if row not in [r["name"] for r in table["rows"]]]
    if unknown:
        raise ConfigError(f"{path}: leave_out names rows {unknown} that {name} does not have")
    if not names:
        return table
    return {**table, "rows": [row for row in table["rows"] if row["name"] not in names]}


def left_out(preset: Preset) -> dict[str, list[str]]:
    """The rows of the preset's tables that it leaves out, by table."""
    return {name: rows for name, rows in preset.raw.get("leave_out", {}).items() if name in preset.tables and rows}


def figure_detector(preset: Preset) -> str | None:
    """The detector of Figures 5-7: the preset's ``figures.detector``, else YOLOv3 (the paper's
    choice) when the preset defines it."""
    detectors = preset.raw["detectors"]
    name = preset.raw.get("figures", {}).get("detector", "yolov3" if "yolov3" in detectors else None)
    if name is not None and name not in detectors:
        raise ConfigError(f"{preset.path}: figures.detector '{name}' is not one of the preset's detectors")
    return None if name is None else canonical(preset, name)


def table_detectors(table: dict) -> list[str]:
    if table["kind"] == "pairs":
        return [row["detector"] for row in table["rows"]]
    return [table["detector"]]


def canonical(preset: Preset, detector: str) -> str:
    seen = [detector]
    while "same_as" in preset.raw["detectors"][detector]:
        detector = preset.raw["detectors"][detector]["same_as"]
        if detector in seen:
            raise ConfigError(f"{preset.path}: detectors {seen} refer to each other in a loop")
        seen.append(detector)
    return detector


def _table_tricks(table: dict) -> list[tuple[str, dict]]:
    """Every ``tricks`` mapping a table definition holds, with where it is (``row 'name'``...)."""
    found = [("tricks", table["tricks"])] if "tricks" in table else []
    for key in ("rows", "columns"):
        for entry in (entry for entry in table.get(key, []) if isinstance(entry, dict)):  # pairs' columns: titles
            label = f"{key[:-1]} '{entry.get('name', '?')}'"
            for side, spec in (("", entry), (" baseline", entry.get("baseline")), (" bof", entry.get("bof"))):
                if isinstance(spec, dict) and "tricks" in spec:
                    found.append((label + side, spec["tricks"]))
    return found


def _check_trick_keys(tricks, cls, where: str, prefix: str) -> None:
    """A ``ConfigError`` naming a trick key that ``cls`` (``TricksConfig`` or one of its sections) does not
    have: the combination's name leaves it out, so it would collide with the combination it misspells."""
    if not isinstance(tricks, dict):
        raise ConfigError(
            f"{where}: tricks{'.' + prefix.rstrip('.') if prefix else ''}: expected a mapping, got {tricks!r}"
        )
    types = typing.get_type_hints(cls)
    for key, value in tricks.items():
        if key not in types:
            raise ConfigError(f"{where}: unknown trick key '{prefix}{key}' (known: {', '.join(sorted(types))})")
        if dataclasses.is_dataclass(types[key]):
            _check_trick_keys(value, types[key], where, f"{prefix}{key}.")


def _merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def _tricks(preset: Preset, detector: str, changes: dict) -> dict:
    """The detector's baseline tricks with ``changes`` applied; the preset's random-shape
    range and mixup-off epochs fill in the details the tables leave open."""
    spec = preset.raw["detectors"][detector]
    tricks = _merge(spec.get("tricks", {}), changes)
    if tricks.get("random_shapes", {}).get("enabled"):
        tricks["random_shapes"] = _merge(spec.get("random_shapes", {}), tricks["random_shapes"])
    if tricks.get("mixup", {}).get("mode", "off") != "off":
        tricks["mixup"].setdefault("off_last_epochs", spec.get("mixup_off_last_epochs", 0))
    return tricks


# How a cell's backbone was pretrained: the plain recipe, its mixup twin, or the control the paper
# does not have: the plain backbone trained with the mixup twin's recipe (as long), without mixup.
PRETRAININGS = ("plain", "mixup", "plain-long")
PRETRAINING_SLUG = {"plain": "", "mixup": "premix", "plain-long": "prelong"}


def pretraining_of(spec: dict) -> str:
    """A table entry's pretraining: ``pretraining: plain-long`` (a control), else ``pretrain_mixup``."""
    pretraining = spec.get("pretraining", "mixup" if spec.get("pretrain_mixup", False) else "plain")
    if pretraining not in PRETRAININGS:
        raise ConfigError(f"pretraining '{pretraining}' is not one of {list(PRETRAININGS)}")
    return pretraining


def combo_name(tricks: TricksConfig, baseline: TricksConfig, pretraining: str) -> str:
    """A readable, canonical name for what differs from the baseline, e.g.
    ``bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5_premix``; ``baseline`` when nothing does:
    the tricks' own parts (`TricksConfig.slugs`) where they differ, then the pretraining's. Fields
    without a slug (the shapes' range, mixup's off_last_epochs) do not name a combination: two
    cells differing only there are refused by `cells` as one name defined two ways."""
    mine, theirs = tricks.slugs(), baseline.slugs()
    parts = [part for name, part in mine.items() if part != theirs[name]]
    parts += [PRETRAINING_SLUG[pretraining]] if PRETRAINING_SLUG[pretraining] else []
    return "_".join(parts) or "baseline"


@dataclass(frozen=True)
class Cell:
    """One table entry: which job holds its number, for each seed."""

    detector: str
    combo: str
    tricks_json: str  # the effective tricks, JSON (hashable)
    pretraining: str  # one of PRETRAININGS

    @property
    def pretrain_mixup(self) -> bool:
        return self.pretraining == "mixup"


def cell(preset: Preset, detector: str, changes: dict, pretraining: str) -> Cell:
    detector = canonical(preset, detector)
    tricks = _tricks(preset, detector, changes)
    baseline = _tricks(preset, detector, {})
    try:
        name = combo_name(build(TricksConfig, tricks, "tricks"), build(TricksConfig, baseline, "tricks"), pretraining)
    except ConfigError as error:
        raise ConfigError(f"{preset.path}: {detector}: {error}") from None
    return Cell(detector, name, json.dumps(tricks, sort_keys=True), pretraining)


def table_cells(preset: Preset, name: str) -> list[list[Cell]]:
    """The table's cells, row by row (``rows``: one column; ``pairs``: baseline and BoF; ``grid``: the grid)."""
    table = preset.tables[name]
    if table["kind"] == "rows":
        return [[cell(preset, table["detector"], row["tricks"], pretraining_of(row))] for row in table["rows"]]
    if table["kind"] == "pairs":
        return [
            [
                cell(preset, row["detector"], row["baseline"].get("tricks", {}), pretraining_of(row["baseline"])),
                cell(preset, row["detector"], row["bof"].get("tricks", {}), pretraining_of(row["bof"])),
            ]
            for row in table["rows"]
        ]
    if table["kind"] == "grid":
        return [
            [
                cell(preset, table["detector"], _merge(table.get("tricks", {}), column["tricks"]), pretraining_of(row))
                for column in table["columns"]
            ]
            for row in table["rows"]
        ]
    raise ConfigError(f"{preset.path}: table {name} has unknown kind {table['kind']!r}")


@dataclass(frozen=True)
class Control:
    """A row the paper does not have, that removes a confound from its rows: ``cell`` takes the place
    of ``replaces`` (same detector and tricks) with only its pretraining changed."""

    name: str
    cell: Cell
    replaces: Cell  # the paper's cell with the confound (e.g. +Mixup backbone, pretrained longer)
    plain: Cell  # the paper's cell without it (the plain backbone, pretrained as the recipe says)


def controls(preset: Preset, name: str) -> list[Control]:
    """A grid table's ``controls``, when the preset asks for them (``controls: true``): each names a
    pretraining and the columns it is run in. A control whose pretraining is the plain one's in this
    preset (no confound: the mixup twin pretrains alike) is no control, and is left out."""
    table = preset.tables[name]
    if table["kind"] != "grid" or not table.get("controls") or not preset.raw.get("controls", False):
        return []
    grid = table_cells(preset, name)
    pretrainings = [pretraining_of(row) for row in table["rows"]]
    if not {"plain", "mixup"} <= set(pretrainings):
        raise ConfigError(
            f"{preset.path}: {name} has controls, but no plain and mixup backbone rows for them to separate"
        )
    plain_row, mixup_row = pretrainings.index("plain"), pretrainings.index("mixup")
    columns = [column["name"] for column in table["columns"]]
    found = []
    for spec in table["controls"]:
        pretraining = pretraining_of(spec)
        for column in spec["columns"]:
            if column not in columns:
                raise ConfigError(
                    f"{preset.path}: {name}: control '{spec['name']}' names no column '{column}' of {columns}"
                )
            c = columns.index(column)
            plain = grid[plain_row][c]
            backbone = pretrain_key(preset, plain.detector)
            if backbone is None or pretrain_config(preset, backbone, pretraining) == pretrain_config(
                preset, backbone, "plain"
            ):
                continue
            tricks = _merge(table.get("tricks", {}), table["columns"][c]["tricks"])
            control = cell(preset, table["detector"], tricks, pretraining)
            found.append(Control(f"{spec['name']} / {column}", control, grid[mixup_row][c], plain))
    return found


def figure_cells(preset: Preset) -> dict[str, tuple[Cell, ...]]:
    """The runs each model-based figure compares, chosen from the preset's tables when they
    hold them (Figure 5: two rows with identical settings except mixup, Table 1's baseline and
    Beta(1.5, 1.5) rows for YOLOv3, Table 3's last two for Faster R-CNN; Figure 6b: the step and
    cosine rows of Table 2 or 3; Figures 7-9: Table 4's freebies), otherwise the minimal pair on
    the figure detector's baseline (``figure_detector``)."""
    figures: dict[str, tuple[Cell, ...]] = {}
    detector = figure_detector(preset)
    if detector is not None:
        figures.update(_figures_5_and_6(preset, detector))
    for name, of in (("figure8", "yolov3"), ("figure9", "frcnn_r50")):
        if "table4" in preset.tables:
            row = next((r for r in preset.tables["table4"]["rows"] if r["detector"] == of), None)
            if row is not None:
                figures[name] = (
                    cell(preset, of, row["baseline"].get("tricks", {}), pretraining_of(row["baseline"])),
                    cell(preset, of, row["bof"].get("tricks", {}), pretraining_of(row["bof"])),
                )
                continue
        table = {"yolov3": "table2", "frcnn_r50": "table3"}[of]
        if table in preset.tables:
            rows = {row["name"]: row for row in preset.tables[table]["rows"]}
            figures[name] = (
                cell(preset, of, rows["baseline"]["tricks"], "plain"),
                cell(preset, of, preset.tables[table]["rows"][-1]["tricks"], "plain"),
            )
    bof_figure = {"yolov3": "figure8", "frcnn_r50": "figure9"}.get(detector)
    if bof_figure in figures:
        figures["figure7"] = (figures[bof_figure][1],)
    pairs = [cell for name in ("figure8", "figure9") if name in figures for cell in figures[name]]
    if pairs:
        figures["figure1"] = tuple(pairs)  # baseline, freebies of each detector: their throughput
    return figures


# the mixup of the minimal Figure 5 pair: Table 1's best row for YOLOv3, GluonCV's for Faster R-CNN
FIGURE5_MIXUP = {
    "yolov3": {"mode": "beta", "alpha": 1.5, "beta": 1.5},
    "faster_rcnn": {"mode": "fixed", "weighted": False, "loss_scale": 0.5},
}


def _figures_5_and_6(preset: Preset, detector: str) -> dict[str, tuple[Cell, ...]]:
    yolo = detector == "yolov3"
    figures = {
        "figure5": (
            cell(preset, detector, {}, "plain"),
            cell(preset, detector, {"mixup": FIGURE5_MIXUP["yolov3" if yolo else "faster_rcnn"]}, "plain"),
        ),
        "figure6": (cell(preset, detector, {}, "plain"), cell(preset, detector, {"lr_schedule": "cosine"}, "plain")),
    }
    table1, stacked = ("table1", "table2") if yolo else (None, "table3")
    if table1 in preset.tables:
        rows = preset.tables[table1]["rows"]
        figures["figure5"] = tuple(cell(preset, detector, row["tricks"], "plain") for row in (rows[0], rows[-1]))
    if stacked in preset.tables:
        rows = preset.tables[stacked]["rows"]
        if table1 is None:  # Table 3's last two rows differ only by mixup
            figures["figure5"] = tuple(cell(preset, detector, row["tricks"], "plain") for row in rows[-2:])
        named = {row["name"]: row for row in rows}
        step = "+ random training shapes" if yolo else "baseline"
        figures["figure6"] = tuple(
            cell(preset, detector, named[name]["tricks"], "plain") for name in (step, "+ cosine lr schedule")
        )
    return figures


def category_metric(preset: Preset) -> str:
    """The per-category AP of Figures 8-9: COCO's when Table 4 is made, else VOC's."""
    return "coco" if "table4" in preset.tables else "voc07"


def cells(preset: Preset) -> dict[tuple[str, str], Cell]:
    """Every distinct (detector, combo) of the preset's tables and figures; two cells with
    the same key must describe the same training (the slug is canonical, so they do)."""
    found: dict[tuple[str, str], Cell] = {}
    entries = [entry for name in preset.tables for row in table_cells(preset, name) for entry in row]
    entries += [control.cell for name in preset.tables for control in controls(preset, name)]
    entries += [entry for pair in figure_cells(preset).values() for entry in pair]
    for entry in entries:
        previous = found.setdefault((entry.detector, entry.combo), entry)
        if previous != entry:
            raise ConfigError(
                f"{preset.path}: combination {entry.combo} of {entry.detector} is defined two different ways"
            )
    return found


def jobs(preset: Preset) -> list[Job]:
    return [Job(detector, combo, seed) for (detector, combo) in sorted(cells(preset)) for seed in preset.seeds]


# --- paths ---


def data_root(preset: Preset) -> str:
    return preset.dataset["root"]


def val_annotations(preset: Preset) -> str:
    """COCO JSON of the validation split (converted from VOC XML when the data is VOC)."""
    if preset.dataset["kind"] == "coco":
        return f"{data_root(preset)}/{preset.dataset['val'][0]}"
    return f"{preset.results}/data/instances_val.json"


def val_annotations_input(preset: Preset) -> str:
    """What the COCO evaluation waits for: the converted file, or the COCO annotations download."""
    if preset.dataset["kind"] == "coco":
        return f"{data_root(preset)}/.bof/coco2017_annotations.done"
    return val_annotations(preset)


def val_annotations_from_input(preset: Preset, annotations_input: str) -> str:
    """The COCO JSON behind :func:`val_annotations_input`'s path (itself, or the download's file)."""
    if preset.dataset["kind"] == "coco":
        return val_annotations(preset)
    return annotations_input


# The folders of one job, written once: the rules take them as wildcard patterns
# (``run_pattern``), the rest of bof fills them in (``run_dir``).
RUN_DIR = "{results}/runs/{detector}/{combo}/seed{seed}"
EVAL_DIR = "{results}/eval/{detector}/{combo}/seed{seed}"


def _pattern(template: str, preset: Preset) -> str:
    return template.replace("{results}", preset.results)


def run_pattern(preset: Preset) -> str:
    """A run folder with ``{detector}``, ``{combo}`` and ``{seed}`` left as Snakemake wildcards."""
    return _pattern(RUN_DIR, preset)


def eval_pattern(preset: Preset) -> str:
    return _pattern(EVAL_DIR, preset)


def run_dir(preset: Preset, job: Job) -> str:
    return RUN_DIR.format(results=preset.results, detector=job.detector, combo=job.combo, seed=job.seed)


def eval_dir(preset: Preset, job: Job) -> str:
    return EVAL_DIR.format(results=preset.results, detector=job.detector, combo=job.combo, seed=job.seed)


def pretrain_key(preset: Preset, detector: str) -> str | None:
    spec = preset.raw["detectors"][canonical(preset, detector)]
    return spec["model"]["backbone"] if spec.get("pretrained", "pipeline") == "pipeline" else None


def pretrain_dir(preset: Preset, backbone: str, pretraining: str) -> str:
    """``pretrain/<backbone>/<pretraining>``: plain, mixup or plain-long (see PRETRAININGS)."""
    return f"{preset.results}/pretrain/{backbone}/{pretraining}"


def pretrain_jobs(preset: Preset) -> list[tuple[str, str]]:
    """(backbone, pretraining) of every backbone the preset's cells start from."""
    needed = set()
    for entry in cells(preset).values():
        key = pretrain_key(preset, entry.detector)
        if key is None:
            if entry.pretraining != "plain":
                raise ConfigError(
                    f"{preset.path}: {entry.detector} uses fixed pretrained weights, but a table needs a "
                    f"{entry.pretraining}-pretrained backbone"
                )
            continue
        needed.add((key, entry.pretraining))
    return sorted(needed, key=lambda job: (job[0], PRETRAININGS.index(job[1])))


def metric_path(preset: Preset, job: Job, metric: str) -> str:
    return f"{eval_dir(preset, job)}/{'voc07' if metric == 'voc07' else 'coco'}.json"


def metric_targets(preset: Preset) -> list[str]:
    """Every metrics file the tables (their controls too) and Figures 8-9 read."""
    targets = set()
    wanted = [
        (entry, table["metric"])
        for name, table in preset.tables.items()
        for row in table_cells(preset, name)
        for entry in row
    ]
    wanted += [
        (control.cell, table["metric"]) for name, table in preset.tables.items() for control in controls(preset, name)
    ]
    wanted += [
        (entry, category_metric(preset))
        for name, pair in figure_cells(preset).items()
        if name in ("figure8", "figure9")
        for entry in pair
    ]
    for entry, metric in wanted:
        for seed in preset.seeds:
            targets.add(metric_path(preset, Job(entry.detector, entry.combo, seed), metric))
    return sorted(targets)


def record_path(preset: Preset, job: Job, name: str) -> str:
    """A run's ``run.json`` or ``val_curve.json``, copied beside its metrics: the results folder's
    ``eval/`` then holds all the report reads of a run (shipped in git, without the checkpoints)."""
    return f"{eval_dir(preset, job)}/{name}"


def record_targets(preset: Preset) -> list[str]:
    return [record_path(preset, job, name) for job in jobs(preset) for name in ("run.json", "val_curve.json")]


def figure_data_targets(preset: Preset) -> list[str]:
    """The figures' JSON (Figures 2-3's training images always, the model-based ones when the
    preset's tables hold the runs they compare)."""
    figures = figure_cells(preset)
    names = ["figure2", *(name for name in ("figure1", "figure5", "figure7") if name in figures)]
    return [f"{preset.results}/figure_data/{name}.json" for name in names]


def report_figures(preset: Preset) -> list[str]:
    """The figures ``bof report`` draws for this preset (Figures 2-4 always, the others when
    the preset's tables hold the runs they compare)."""
    available = figure_cells(preset)
    names = ["figure1"] if "figure1" in available else []
    names += ["figure2", "figure3", "figure4"]
    names += ["figure5"] if "figure5" in available else []
    names += ["figure6a", "figure6b"] if "figure6" in available else []
    names += [name for name in ("figure7", "figure8", "figure9") if name in available]
    return names


def figure_examples(preset: Preset) -> int:
    """Test images shown in Figure 7 (``figures.examples``, 4 by default)."""
    return int(preset.raw.get("figures", {}).get("examples", 4))


def figure_models(preset: Preset, figure: str) -> list[str]:
    """model.pt of the runs a model-based figure compares (first seed)."""
    return [
        f"{run_dir(preset, Job(c.detector, c.combo, preset.seeds[0]))}/model.pt" for c in figure_cells(preset)[figure]
    ]


# --- job configs ---


def data_section(preset: Preset) -> dict:
    dataset = preset.dataset
    if dataset["kind"] == "coco":
        root = data_root(preset)
        return {
            "format": "coco",
            "root": f"{root}/{dataset['images']['train']}",
            "val_root": f"{root}/{dataset['images']['val']}",
            "train": [f"{root}/{dataset['train'][0]}"],
            "val": [f"{root}/{dataset['val'][0]}"],
        }
    return {"format": "voc", "root": f"{data_root(preset)}/VOCdevkit", "train": dataset["train"], "val": dataset["val"]}


def anchors_path(preset: Preset, detector: str) -> str | None:
    """Where the pipeline writes a detector's k-means anchors (``model.anchors: kmeans``), or None."""
    detector = canonical(preset, detector)
    if preset.raw["detectors"][detector]["model"].get("anchors") != "kmeans":
        return None
    return f"{preset.results}/data/anchors_{detector}.json"


def anchors_targets(preset: Preset) -> list[str]:
    """Every k-means anchors file the preset's detectors use (part of the data stage)."""
    return sorted({path for detector in preset.raw["detectors"] if (path := anchors_path(preset, detector))})


def anchors_input(preset: Preset, job: Job) -> list[str]:
    path = anchors_path(preset, job.detector)
    return [path] if path else []


def anchors_size(preset: Preset, detector: str) -> int:
    """The input size k-means anchors are computed at: the detector's training size."""
    return int(preset.raw["detectors"][canonical(preset, detector)]["model"].get("input_size", 416))


def train_config(preset: Preset, job: Job) -> TrainConfig:
    entry = cells(preset)[(job.detector, job.combo)]
    spec = preset.raw["detectors"][job.detector]
    model = dict(spec["model"])
    if model.get("anchors") == "kmeans":
        model["anchors"] = anchors_path(preset, job.detector)
    key = pretrain_key(preset, job.detector)
    if key is not None:
        model["pretrained"] = f"{pretrain_dir(preset, key, entry.pretraining)}/backbone.pt"
    elif spec.get("pretrained") == "imagenet":
        model["pretrained"] = "imagenet"
    data = {
        "seed": job.seed,
        "data": data_section(preset),
        "model": model,
        "tricks": json.loads(entry.tricks_json),
        "augment": spec.get("augment", {}),
        "optim": spec.get("optim", {}),
        "run": spec.get("run", {}),
    }
    try:
        return build(TrainConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{preset.path}: {job.detector}/{job.combo}: {error}") from None


def pretrain_config(preset: Preset, backbone: str, pretraining: str) -> PretrainConfig:
    spec = preset.raw["pretrain"].get(backbone)
    if spec is None:
        raise ConfigError(f"{preset.path}: no `pretrain.{backbone}` settings")
    spec = dict(spec)
    spec.pop("resources", None)  # the job's machine, not the recipe
    # the mixup twin's own settings, where the recipe being reproduced differs (GluonCV's
    # darknet53-mixup.sh trained 200 epochs against darknet53.sh's 120); the plain-long control
    # takes them too, without mixup
    mixup_recipe = spec.pop("mixup_recipe", {})
    if pretraining in ("mixup", "plain-long"):
        spec.update(mixup_recipe)
    data = {
        **spec,
        "backbone": backbone,
        "mixup": pretraining == "mixup",
        "data": preset.dataset["classification"],
        "seed": preset.seeds[0],
    }
    try:
        return build(PretrainConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{preset.path}: pretrain.{backbone}: {error}") from None


def train_config_json(preset: Preset, job: Job) -> str:
    return json.dumps(to_dict(train_config(preset, job)), sort_keys=True)


def pretrain_config_json(preset: Preset, backbone: str, pretraining: str) -> str:
    return json.dumps(to_dict(pretrain_config(preset, backbone, pretraining)), sort_keys=True)


# --- what the rules pass on the command line ---


def synth_options(preset: Preset) -> str:
    """``bof synth`` options of the preset's ``dataset.synth`` (shell-quoted); ``class_names``
    becomes ``--classes a,b,...``."""
    options = dict(preset.dataset["synth"])
    if "class_names" in options:
        options["classes"] = ",".join(options.pop("class_names"))
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())


def check_arguments(preset: Preset, split: str) -> str:
    """``bof data check``/``to-coco`` arguments naming the preset's train or val data (shell-quoted)."""
    data = data_section(preset)
    items = data["train"] if split == "train" else data["val"]
    if data["format"] == "voc":
        return f"--voc {shlex.quote(data['root'])} --sets {shlex.quote(','.join(items))}"
    root = data["val_root"] if split == "val" else data["root"]
    return f"--coco {shlex.quote(items[0])} --images {shlex.quote(root)}"


def pretrained_input(preset: Preset, job: Job) -> list[str]:
    """The backbone file a training job needs from the pretrain rule (none for fixed weights)."""
    key = pretrain_key(preset, job.detector)
    if key is None:
        return []
    return [f"{pretrain_dir(preset, key, cells(preset)[(job.detector, job.combo)].pretraining)}/backbone.pt"]


def job_threads(preset: Preset) -> int:
    """CPU threads of each training and pretraining job that names none (``threads`` in the
    preset, default 2): on a 2-core machine, two 1-thread jobs side by side finish more work
    than one 2-thread job."""
    return int(preset.raw.get("threads", 2))


@dataclass(frozen=True)
class JobResources:
    """What one training or pretraining job asks of its machine (a SLURM allocation on one node)."""

    gpus: int  # one process per GPU (torch.distributed.run), or one process on the CPU
    cpus: int
    mem_mb: int  # first attempt; a retry asks for this times the attempt
    runtime: int  # minutes, likewise
    workers: int  # data-loader workers of each process

    @property
    def processes(self) -> int:
        return max(self.gpus, 1)

    @property
    def threads_per_process(self) -> int:
        """OMP threads of each process: the CPUs its share leaves after its data-loader workers."""
        return max(1, self.cpus // self.processes - self.workers)


def _resources(preset: Preset, section: dict, workers: int, where: str) -> JobResources:
    spec = section.get("resources", {})
    resources = JobResources(
        gpus=int(spec.get("gpus", 0)),
        cpus=int(spec.get("cpus", job_threads(preset))),
        mem_mb=int(spec.get("mem_mb", 4000)),
        runtime=int(spec.get("runtime", 120)),
        workers=workers,
    )
    if resources.processes * (resources.workers + 1) > resources.cpus:
        raise ConfigError(
            f"{preset.path}: {where}: {resources.processes} process(es) with {resources.workers} data-loader "
            f"workers each need {resources.processes * (resources.workers + 1)} CPUs, resources.cpus is {resources.cpus}"
        )
    return resources


def training_resources(preset: Preset, detector: str) -> JobResources:
    detector = canonical(preset, detector)
    spec = preset.raw["detectors"][detector]
    return _resources(preset, spec, int(spec.get("run", {}).get("workers", 2)), f"detectors.{detector}")


def pretraining_resources(preset: Preset, backbone: str) -> JobResources:
    spec = preset.raw["pretrain"].get(backbone, {})
    return _resources(preset, spec, int(spec.get("workers", 4)), f"pretrain.{backbone}")


def job_resource(preset: Preset, kind: str, name: str, *, per_attempt: bool = False):
    """A rule's ``name`` resource (a field of `JobResources`) for its job, as the callable Snakemake
    takes: ``kind`` "train" reads the {detector} wildcard, "pretrain" the {backbone}; with
    ``per_attempt`` a retry asks for the first attempt's amount times the attempt."""
    if kind not in ("train", "pretrain"):
        raise ValueError(f"job_resource: kind must be 'train' or 'pretrain', got {kind!r}")
    resources_of = training_resources if kind == "train" else pretraining_resources
    wildcard = "detector" if kind == "train" else "backbone"

    def amount(wildcards) -> int:
        return getattr(resources_of(preset, getattr(wildcards, wildcard)), name)

    if per_attempt:
        return lambda wildcards, attempt: attempt * amount(wildcards)
    return amount


def launcher(gpu_count: int = 0) -> str:
    """``python -m bof`` with the interpreter Snakemake runs under (so rules work without an
    activated environment), or ``torch.distributed.run`` with one process per GPU when a job has several."""
    python = shlex.quote(sys.executable)
    if gpu_count > 1:
        return f"{python} -m torch.distributed.run --standalone --nproc_per_node {gpu_count} -m bof"
    return f"{python} -m bof"


def class_names(preset: Preset) -> list[str]:
    """The dataset's classes in label order, known before the dataset exists: the VOC results
    files of each training are named after them."""
    kind = preset.dataset["kind"]
    if kind == "voc":  # VOC's 20, or a devkit's own classes.txt once it is there
        return read_class_names(Path(data_section(preset)["root"]))
    if kind == "synth":
        synth = preset.dataset["synth"]
        classes = synth.get("class_names") or synth.get("classes", SynthConfig.num_classes)
        num_classes, names = parse_classes(",".join(classes) if isinstance(classes, list) else classes)
        return SynthConfig(num_classes=num_classes, class_names=names).names
    return []  # COCO: the trainings write no VOC results


def voc_results_files(preset: Preset, folder: str) -> list[str]:
    """The ``comp4_det_<split>_<class>.txt`` files a training writes into ``folder``/voc."""
    split = data_section(preset)["val"][0].split(":")[-1]
    return [str(voc_results_path(f"{folder}/voc", split, name)) for name in class_names(preset)]


def voc_evaluation_arguments(preset: Preset) -> str:
    """``--devkit --year --split`` of the VOC validation set, for ``bof evaluate voc``."""
    data = data_section(preset)
    year, split = data["val"][0].split(":")
    return f"--devkit {shlex.quote(data['root'])} --year {shlex.quote(year)} --split {shlex.quote(split)}"
