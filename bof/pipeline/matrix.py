"""The experiment matrix: a preset (``config/<name>.yaml``) plus the table definitions
(``config/tables.yaml``) expanded into pretraining and training jobs.

Every table cell names a detector, a set of tricks relative to that detector's baseline
tricks, and whether the backbone was pretrained with mixup. Those three settle the job:
its directory name (the *combo*) is a canonical slug of the differences from the
baseline, so a combination that two tables share trains once, and ``seeds`` repeat
every job. The Snakefile asks this module for its targets and for each job's resolved
config; nothing here runs anything. It reads the preset as `bof.pipeline.preset` parsed it
(typed, frozen), never its YAML.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bof.config import PretrainConfig, TrainConfig, TricksConfig, build, to_dict
from bof.data.synth.config import SynthConfig, parse_classes
from bof.data.voc import read_class_names
from bof.errors import FAILED_ON_INPUT, ConfigError
from bof.evaluation.formats import voc_results_path
from bof.pipeline.preset import PRETRAININGS, SCHEMA, BackboneSpec, Preset, ResourceRequest, TableRow, read_preset


@dataclass(frozen=True)
class Job:
    detector: str  # canonical detector name (after `same_as`)
    combo: str
    seed: int

    @classmethod
    def of(cls, wildcards) -> Job:
        """The job a Snakemake rule's ``{detector}/{combo}/{seed}`` wildcards name."""
        return cls(wildcards.detector, wildcards.combo, int(wildcards.seed))


def load_preset(
    path: str | Path,
    raw: dict | None = None,
    *,
    default_tables: str | Path | None = None,
    schema: str | Path | None = SCHEMA,
) -> Preset:
    """The typed preset (`read_preset`: its YAML, or ``raw``, with the tables it names), checked
    here for what needs the matrix: the detectors its tables and figures name, and every job's
    config built once, so that a bad value fails at start."""
    preset = read_preset(path, raw, default_tables=default_tables, schema=schema)
    figure_detector(preset)
    for name, table in preset.tables.items():
        for detector in table.detectors:
            if detector not in preset.detectors:
                raise ConfigError(
                    f"{preset.path}: {name} needs detector '{detector}', which the preset does not define"
                )
    for job in jobs(preset):
        train_config(preset, job)
    for detector in preset.detectors:
        training_resources(preset, detector)
    for backbone in preset.pretrain:
        pretraining_resources(preset, backbone)
    return preset


def left_out(preset: Preset) -> dict[str, list[str]]:
    """The rows of the preset's tables that it leaves out, by table (of config/tables.yaml: a budget's
    copies leave out what their table does)."""
    bases = {table.base or name for name, table in preset.tables.items()}
    return {name: list(rows) for name, rows in preset.leave_out.items() if name in bases and rows}


def figure_detector(preset: Preset) -> str | None:
    """The detector of Figures 5-7: the preset's ``figures.detector``, else YOLOv3 (the paper's
    choice) when the preset defines it."""
    name = preset.figures.detector
    if name is None:
        name = "yolov3" if "yolov3" in preset.detectors else None
    if name is not None and name not in preset.detectors:
        raise ConfigError(f"{preset.path}: figures.detector '{name}' is not one of the preset's detectors")
    return None if name is None else canonical(preset, name)


def canonical(preset: Preset, detector: str) -> str:
    seen = [detector]
    while preset.detectors[detector].same_as is not None:
        detector = preset.detectors[detector].same_as
        if detector in seen:
            raise ConfigError(f"{preset.path}: detectors {seen} refer to each other in a loop")
        seen.append(detector)
    return detector


def _merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def _tricks(preset: Preset, detector: str, changes: dict) -> dict:
    """The detector's baseline tricks with ``changes`` applied; the preset's random-shape
    range and mixup-off epochs fill in the details the tables leave open."""
    spec = preset.detectors[detector]
    tricks = _merge(spec.tricks, changes)
    if tricks.get("random_shapes", {}).get("enabled"):
        tricks["random_shapes"] = _merge(spec.random_shapes, tricks["random_shapes"])
    if tricks.get("mixup", {}).get("mode", "off") != "off":
        tricks["mixup"].setdefault("off_last_epochs", spec.mixup_off_last_epochs)
    return tricks


# the part of a combination's name its pretraining adds (PRETRAININGS: how its backbone was
# pretrained; "published": the publisher's ImageNet weights, bof.models.published). A detector
# that starts from published weights names its pipeline-pretrained plain cells (Tables 5-6) apart.
PRETRAINING_SLUG = {
    "plain": "",
    "mixup": "premix",
    "plain-long": "prelong",
    "published": "",
    "pipeline-plain": "preplain",
}


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
    pretraining: str  # one of PRETRAININGS, or "published"
    # what the table asked for where the published backbone stands in ("mixup": Table 4's BoF);
    # the same training whatever it stands in for
    substitutes: str | None = field(default=None, compare=False)

    @property
    def pretrain_mixup(self) -> bool:
        return self.pretraining == "mixup"


def cell(preset: Preset, detector: str, changes: dict, pretraining: str, *, pipeline: bool = False) -> Cell:
    """The cell of ``detector`` with ``changes`` to its baseline tricks. When the detector says
    ``pretrained: imagenet`` its backbone is the published one, unless ``pipeline`` (the cells of a
    grid table, Tables 5-6, which compare the pipeline's pretrainings): also where a table asks for
    a mixup-pretrained backbone (Table 4's BoF column), which nobody publishes (docs/fidelity.md)."""
    detector = canonical(preset, detector)
    publishes = preset.detectors[detector].pretrained == "imagenet"
    slug, substitutes = pretraining, None
    if publishes and not pipeline and pretraining in ("plain", "mixup"):
        substitutes = None if pretraining == "plain" else pretraining
        pretraining = slug = "published"
    elif publishes and pretraining == "plain":
        slug = "pipeline-plain"
    tricks = _tricks(preset, detector, changes)
    baseline = _tricks(preset, detector, {})
    try:
        name = combo_name(build(TricksConfig, tricks, "tricks"), build(TricksConfig, baseline, "tricks"), slug)
    except ConfigError as error:
        raise ConfigError(f"{preset.path}: {detector}: {error}") from None
    return Cell(detector, name, json.dumps(tricks, sort_keys=True), pretraining, substitutes)


def table_cells(preset: Preset, name: str) -> list[list[Cell]]:
    """The table's cells, row by row (``rows``: one column; ``pairs``: baseline and BoF; ``grid``: the grid)."""
    table = preset.tables[name]
    if table.kind == "rows":
        return [[cell(preset, table.detector, row.tricks, row.pretraining)] for row in table.rows]
    if table.kind == "pairs":
        return [list(pair_cells(preset, row)) for row in table.rows]
    if table.kind == "grid":
        return [
            [
                cell(preset, table.detector, _merge(table.tricks, column.tricks), row.pretraining, pipeline=True)
                for column in table.columns
            ]
            for row in table.rows
        ]
    raise ConfigError(f"{preset.path}: table {name} has unknown kind {table.kind!r}")


def pair_cells(preset: Preset, row: TableRow) -> tuple[Cell, Cell]:
    """A ``pairs`` table row's baseline and freebies cells."""
    return tuple(cell(preset, row.detector, side.tricks, side.pretraining) for side in (row.baseline, row.bof))


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
    if table.kind != "grid" or not table.controls or not preset.run_controls:
        return []
    grid = table_cells(preset, name)
    pretrainings = [row.pretraining for row in table.rows]
    if not {"plain", "mixup"} <= set(pretrainings):
        raise ConfigError(
            f"{preset.path}: {name} has controls, but no plain and mixup backbone rows for them to separate"
        )
    plain_row, mixup_row = pretrainings.index("plain"), pretrainings.index("mixup")
    columns = [column.name for column in table.columns]
    found = []
    for spec in table.controls:
        pretraining = spec.pretraining
        for column in spec.columns:
            if column not in columns:
                raise ConfigError(
                    f"{preset.path}: {name}: control '{spec.name}' names no column '{column}' of {columns}"
                )
            c = columns.index(column)
            plain = grid[plain_row][c]
            backbone = pretrain_key(preset, plain.detector)
            if backbone is None or pretrain_config(preset, backbone, pretraining) == pretrain_config(
                preset, backbone, "plain"
            ):
                continue
            tricks = _merge(table.tricks, table.columns[c].tricks)
            control = cell(preset, table.detector, tricks, pretraining, pipeline=True)
            found.append(Control(f"{spec.name} / {column}", control, grid[mixup_row][c], plain))
    return found


def figure_cells(preset: Preset) -> dict[str, tuple[Cell, ...]]:
    """The runs each model-based figure compares, chosen from the preset's tables when they
    hold them (Figure 5: two rows with identical settings except mixup, Table 1's baseline and
    Beta(1.5, 1.5) rows for YOLOv3, else Table 2's or 3's "+ mixup" and the row it stacks on;
    Figure 6b: the step and cosine rows of Table 2 or 3; Figures 7-9: Table 4's freebies),
    otherwise the minimal pair on the figure detector's baseline (``figure_detector``). A
    preset's budgets rename its detectors and tables (``frcnn_r50_48e``): they make none of these."""
    figures: dict[str, tuple[Cell, ...]] = {}
    detector = figure_detector(preset)
    if detector is not None:
        figures.update(_figures_5_and_6(preset, detector))
    for name, of in (("figure8", "yolov3"), ("figure9", "frcnn_r50")):
        if "table4" in preset.tables:
            row = next((r for r in preset.tables["table4"].rows if r.detector == of), None)
            if row is not None:
                figures[name] = pair_cells(preset, row)
                continue
        table = preset.tables.get({"yolov3": "table2", "frcnn_r50": "table3"}[of])
        if table is not None and STACKED in table.row_names:
            figures[name] = (
                cell(preset, of, table.row(table.baseline).tricks, "plain"),
                cell(preset, of, table.row(STACKED).tricks, "plain"),
            )
    bof_figure = {"yolov3": "figure8", "frcnn_r50": "figure9"}.get(detector)
    if bof_figure in figures:
        figures["figure7"] = (figures[bof_figure][1],)
    pairs = [cell for name in ("figure8", "figure9") if name in figures for cell in figures[name]]
    if pairs:
        figures["figure1"] = tuple(pairs)  # baseline, freebies of each detector: their throughput
    return figures


# the mixup of the minimal Figure 5 pair: the paper's (§3.1; Table 1's best row), both detectors
FIGURE5_MIXUP = {"mode": "beta", "alpha": 1.5, "beta": 1.5}
# the row of Tables 2 and 3 that stacks every freebie (config/tables.yaml)
STACKED = "+ mixup"


def _figures_5_and_6(preset: Preset, detector: str) -> dict[str, tuple[Cell, ...]]:
    yolo = detector == "yolov3"
    figures = {
        "figure5": (
            cell(preset, detector, {}, "plain"),
            cell(preset, detector, {"mixup": FIGURE5_MIXUP}, "plain"),
        ),
        "figure6": (cell(preset, detector, {}, "plain"), cell(preset, detector, {"lr_schedule": "cosine"}, "plain")),
    }
    table1, stacked = ("table1", "table2") if yolo else (None, "table3")
    if table1 in preset.tables:
        rows = preset.tables[table1].rows
        figures["figure5"] = tuple(cell(preset, detector, row.tricks, "plain") for row in (rows[0], rows[-1]))
    if stacked in preset.tables:
        table = preset.tables[stacked]
        mixup = table.row(STACKED) if STACKED in table.row_names else None
        plain = None if mixup is None else table.stacked_on(mixup)
        if table1 not in preset.tables and plain is not None:  # "+ mixup" and the row it stacks on
            figures["figure5"] = (
                cell(preset, detector, plain.tricks, "plain"),
                cell(preset, detector, mixup.tricks, "plain"),
            )
        step = "+ random training shapes" if yolo else table.baseline  # the row the cosine one stacks on
        figures["figure6"] = tuple(
            cell(preset, detector, table.row(name).tricks, "plain") for name in (step, "+ cosine lr schedule")
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
    return preset.dataset.root


def val_annotations(preset: Preset) -> str:
    """COCO JSON of the validation split (converted from VOC XML when the data is VOC)."""
    if preset.dataset.kind == "coco":
        return f"{data_root(preset)}/{preset.dataset.val[0]}"
    return f"{preset.results}/data/instances_val.json"


def val_annotations_input(preset: Preset) -> str:
    """What the COCO evaluation waits for: the converted file, or the COCO annotations download."""
    if preset.dataset.kind == "coco":
        return f"{data_root(preset)}/.bof/coco2017_annotations.done"
    return val_annotations(preset)


def val_annotations_from_input(preset: Preset, annotations_input: str) -> str:
    """The COCO JSON behind :func:`val_annotations_input`'s path (itself, or the download's file)."""
    if preset.dataset.kind == "coco":
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
    """The backbone the pipeline pretrains for ``detector`` (for every cell, or with published
    weights for the grid tables' only), or None (``pretrained: none``)."""
    spec = preset.detectors[canonical(preset, detector)]
    return spec.model["backbone"] if spec.pretrained in ("pipeline", "imagenet") else None


def cell_backbone(preset: Preset, entry: Cell) -> str | None:
    """The pipeline pretraining ``entry`` starts from, or None (published or no weights)."""
    return None if entry.pretraining == "published" else pretrain_key(preset, entry.detector)


def pretrain_dir(preset: Preset, backbone: str, pretraining: str) -> str:
    """``pretrain/<backbone>/<pretraining>``: plain, mixup or plain-long (see PRETRAININGS)."""
    return f"{preset.results}/pretrain/{backbone}/{pretraining}"


def pretrain_jobs(preset: Preset) -> list[tuple[str, str]]:
    """(backbone, pretraining) of every backbone the preset's cells start from."""
    needed = set()
    for entry in cells(preset).values():
        key = cell_backbone(preset, entry)
        if key is None:
            if entry.pretraining not in ("plain", "published"):
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
        (entry, table.metric)
        for name, table in preset.tables.items()
        for row in table_cells(preset, name)
        for entry in row
    ]
    wanted += [
        (control.cell, table.metric) for name, table in preset.tables.items() for control in controls(preset, name)
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
    stacked = any(table.stacked_on(row) for table in preset.tables.values() if table.base for row in table.rows)
    names += ["budget"] if stacked else []  # each freebie's delta against the budget (bof.report.budget)
    return names


def figure_examples(preset: Preset) -> int:
    """Test images shown in Figure 7 (``figures.examples``, 4 by default)."""
    return int(preset.figures.examples)


def figure_models(preset: Preset, figure: str) -> list[str]:
    """model.pt of the runs a model-based figure compares (first seed)."""
    return [
        f"{run_dir(preset, Job(c.detector, c.combo, preset.seeds[0]))}/model.pt" for c in figure_cells(preset)[figure]
    ]


# --- job configs ---


def data_section(preset: Preset) -> dict:
    dataset = preset.dataset
    if dataset.kind == "coco":
        root = data_root(preset)
        return {
            "format": "coco",
            "root": f"{root}/{dataset.images['train']}",
            "val_root": f"{root}/{dataset.images['val']}",
            "train": [f"{root}/{dataset.train[0]}"],
            "val": [f"{root}/{dataset.val[0]}"],
        }
    return {
        "format": "voc",
        "root": f"{data_root(preset)}/VOCdevkit",
        "train": list(dataset.train),
        "val": list(dataset.val),
    }


def anchors_path(preset: Preset, detector: str) -> str | None:
    """Where the pipeline writes a detector's k-means anchors (``model.anchors: kmeans``), or None."""
    detector = canonical(preset, detector)
    if preset.detectors[detector].model.get("anchors") != "kmeans":
        return None
    return f"{preset.results}/data/anchors_{detector}.json"


def anchors_targets(preset: Preset) -> list[str]:
    """Every k-means anchors file the preset's detectors use (part of the data stage)."""
    return sorted({path for detector in preset.detectors if (path := anchors_path(preset, detector))})


def anchors_input(preset: Preset, job: Job) -> list[str]:
    path = anchors_path(preset, job.detector)
    return [path] if path else []


def anchors_size(preset: Preset, detector: str) -> int:
    """The input size k-means anchors are computed at: the detector's training size."""
    return int(preset.detectors[canonical(preset, detector)].model.get("input_size", 416))


def train_config(preset: Preset, job: Job) -> TrainConfig:
    entry = cells(preset)[(job.detector, job.combo)]
    spec = preset.detectors[job.detector]
    model = dict(spec.model)
    if model.get("anchors") == "kmeans":
        model["anchors"] = anchors_path(preset, job.detector)
    key = cell_backbone(preset, entry)
    if key is not None:
        model["pretrained"] = f"{pretrain_dir(preset, key, entry.pretraining)}/backbone.pt"
    elif entry.pretraining == "published":
        model["pretrained"] = "imagenet"
    data = {
        "seed": job.seed,
        "data": data_section(preset),
        "model": model,
        "tricks": json.loads(entry.tricks_json),
        "augment": spec.augment,
        "optim": spec.optim,
        "run": spec.run,
    }
    try:
        return build(TrainConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{preset.path}: {job.detector}/{job.combo}: {error}") from None


def pretrain_config(preset: Preset, backbone: str, pretraining: str) -> PretrainConfig:
    spec = preset.pretrain.get(backbone)
    if spec is None:
        raise ConfigError(f"{preset.path}: no `pretrain.{backbone}` settings")
    recipe = dict(spec.recipe)
    # the mixup twin's own settings, where the recipe being reproduced differs (GluonCV's
    # darknet53-mixup.sh trained 200 epochs against darknet53.sh's 120); the plain-long control
    # takes them too, without mixup
    if pretraining in ("mixup", "plain-long"):
        recipe.update(spec.mixup_recipe)
    data = {
        **recipe,
        "backbone": backbone,
        "mixup": pretraining == "mixup",
        "data": preset.dataset.classification,
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
    options = dict(preset.dataset.synth)
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
    """The backbone file a training job needs from the pretrain rule (none for published or no weights)."""
    entry = cells(preset)[(job.detector, job.combo)]
    key = cell_backbone(preset, entry)
    return [f"{pretrain_dir(preset, key, entry.pretraining)}/backbone.pt"] if key is not None else []


def published_input(preset: Preset, job: Job) -> list[str]:
    """The published weights file a training job starts from (`published_backbone`), if any."""
    entry = cells(preset)[(job.detector, job.combo)]
    return (
        [published_path(preset.detectors[job.detector].model["backbone"])] if entry.pretraining == "published" else []
    )


# the file names of the published weights, as bof.models.published downloads them (no torch here),
# and those whose SHA-256 bof does not pin (fetched by hand, with the digest the user trusts)
UNPINNED = ("darknet53",)
PUBLISHED_FILES = {
    "darknet53": "darknet53.conv.74",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
}


def published_dir() -> str:
    """Where `bof fetch-backbone` puts the published weights and training reads them: torch.hub's
    checkpoint cache (``$TORCH_HOME/hub/checkpoints``, by torch's rule, found without torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def published_path(backbone: str) -> str:
    return os.path.join(published_dir(), PUBLISHED_FILES[backbone])


def published_backbone(file: str) -> str:
    """The backbone whose published weights file is ``file``."""
    return {name: backbone for backbone, name in PUBLISHED_FILES.items()}[file]


def imagenet_input(preset: Preset, backbone: str) -> list[str]:
    """What a pretraining needs from outside: ImageNet (the synthetic presets make their own set,
    a rule's output). Missing, it stops the DAG before any job (``snakemake -n`` included), in one line."""
    classification = Path(preset.dataset.classification)
    if preset.dataset.kind != "synth" and not (classification / "train").is_dir():
        raise ConfigError(
            f"{preset.path}: its tables pretrain {backbone} on ImageNet, which is not at {classification} "
            f"(dataset.classification: ImageNet in ImageFolder layout, train/<class>/ and val/<class>/)"
        )
    return []


@functools.cache
def local_gpus() -> int:
    """The CUDA devices this machine shows its jobs: ``CUDA_VISIBLE_DEVICES`` where set, else
    ``nvidia-smi -L``'s list (none without it). Found without torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() and device.strip() != "-1"])
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0


def gpus_here(workflow) -> int | None:
    """This machine's GPUs where Snakemake's ``workflow`` runs its jobs on it (not on a cluster's
    nodes, not a dry run), else None. Asked as the DAG is built: the executor is known by then."""
    runs_jobs = workflow.executor_plugin is not None and not workflow.touch  # not --report, --dag, --touch
    if runs_jobs and workflow.is_main_process and workflow.local_exec and not workflow.dryrun:
        return local_gpus()
    return None


def gpu_input(preset: Preset, kind: str, wildcards, available: int | None) -> list[str]:
    """What a training (``kind`` "train") or pretraining ("pretrain") of the rule's ``wildcards``
    needs of a machine that runs it here: its GPUs. ``available``: this machine's, when the jobs
    run here (not on a cluster, not a dry run), else None (not known). Too few stop the DAG at
    once, in one line: torchrun would start the processes on devices that are not there. A job
    already done needs none."""
    if kind == "train":
        name, done = wildcards.detector, f"{run_dir(preset, Job.of(wildcards))}/model.pt"
        resources = training_resources(preset, name)
    else:
        name = wildcards.backbone
        done = f"{pretrain_dir(preset, name, wildcards.variant)}/backbone.pt"
        resources = pretraining_resources(preset, name)
    if available is not None and resources.gpus > available and not os.path.exists(done):
        section = f"detectors.{canonical(preset, name)}" if kind == "train" else f"pretrain.{name}"
        raise ConfigError(
            f"{preset.path}: {section} asks for {resources.gpus} GPUs a job, this machine has {available}: run it "
            f"on a cluster (--profile profiles/slurm) or give {section}.resources.gpus what is here"
        )
    return []


def published_missing(preset: Preset) -> list[str]:
    """The published weights the preset's trainings need that cannot be fetched by the pipeline
    (no pinned digest) and are not there yet: what to run, one line each."""
    backbones = {
        preset.detectors[entry.detector].model["backbone"]
        for entry in cells(preset).values()
        if entry.pretraining == "published"
    }
    return [
        f"{published_path(backbone)} is missing: fetch it once with `bof fetch-backbone {backbone} --sha256 HEX` "
        f"(or --from FILE), bof pins no digest for it"
        for backbone in sorted(backbones)
        if backbone in UNPINNED and not os.path.exists(published_path(backbone))
    ]


def preflight(preset: Preset) -> list[str]:
    """What the preset needs from outside the pipeline and does not have, one line each, for the
    Snakefile to stop on before any job starts (``snakemake -n`` included): a writable results
    folder (ImageNet: `imagenet_input`, when a pretraining is in the DAG)."""
    problems = []
    results = Path(preset.results).absolute()
    existing = next(parent for parent in (results, *results.parents) if parent.exists())
    if not os.access(existing, os.W_OK):
        problems.append(f"{preset.path}: results folder {results} cannot be written ({existing} is not writable)")
    return problems


def job_threads(preset: Preset) -> int:
    """CPU threads of each training and pretraining job that names none (``threads`` in the
    preset, default 2): on a 2-core machine, two 1-thread jobs side by side finish more work
    than one 2-thread job."""
    return preset.threads


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


def _resources(preset: Preset, request: ResourceRequest, workers: int, where: str) -> JobResources:
    resources = JobResources(
        gpus=request.gpus,
        cpus=job_threads(preset) if request.cpus is None else request.cpus,
        mem_mb=request.mem_mb,
        runtime=request.runtime,
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
    spec = preset.detectors[detector]
    return _resources(preset, spec.resources, int(spec.run.get("workers", 2)), f"detectors.{detector}")


def pretraining_resources(preset: Preset, backbone: str) -> JobResources:
    spec = preset.pretrain.get(backbone, BackboneSpec())
    return _resources(preset, spec.resources, spec.workers, f"pretrain.{backbone}")


def job_resource(preset: Preset, kind: str, name: str, *, per_attempt: bool = False):
    """A rule's ``name`` resource (a field of `JobResources`) for its job, as the callable Snakemake
    takes: ``kind`` "train" reads the {detector} wildcard, "pretrain" the {backbone}; with
    ``per_attempt`` a retry asks for the first attempt's amount times the attempt, unless the first
    failed on its input or config (`FAILED_ON_INPUT` in the job's folder: the retry only says so).
    (Its GPUs it still asks for: ``threads`` and ``gpu`` take no attempt.)"""
    if kind not in ("train", "pretrain"):
        raise ValueError(f"job_resource: kind must be 'train' or 'pretrain', got {kind!r}")
    resources_of = training_resources if kind == "train" else pretraining_resources
    wildcard = "detector" if kind == "train" else "backbone"

    def amount(wildcards) -> int:
        return getattr(resources_of(preset, getattr(wildcards, wildcard)), name)

    def folder(wildcards) -> str:
        if kind == "train":
            return run_dir(preset, Job.of(wildcards))
        return pretrain_dir(preset, wildcards.backbone, wildcards.variant)

    if per_attempt:  # after a failure on input the retry stops at once: the least memory and time
        return lambda wildcards, attempt: (
            RETRY_AFTER_BAD_INPUT[name]
            if attempt > 1 and failed_on_input(folder(wildcards))
            else attempt * amount(wildcards)
        )
    return amount


RETRY_AFTER_BAD_INPUT = {"mem_mb": 1000, "runtime": 5}


def failed_on_input(folder: str) -> bool:
    """Whether the job of ``folder`` failed on its input or config (a retry would fail alike)."""
    return os.path.exists(os.path.join(folder, FAILED_ON_INPUT))


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
    kind = preset.dataset.kind
    if kind == "voc":  # VOC's 20, or a devkit's own classes.txt once it is there
        return read_class_names(Path(data_section(preset)["root"]))
    if kind == "synth":
        synth = preset.dataset.synth
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
