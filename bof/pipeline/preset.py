"""A preset (``config/<name>.yaml``) and the table definitions it names (``config/tables.yaml``),
parsed once, at the edge, into frozen typed objects.

``read_preset`` checks the YAML against the preset's JSON schema and the tables' trick keys,
then builds a `Preset`: its detectors as `DetectorSpec`, its backbones' recipes as `BackboneSpec`,
its tables as `Table`s of `TableRow`s with each entry's pretraining resolved. The matrix
(``bof.pipeline.matrix``) works on those. The sections a typed config builds itself (a detector's
``model``, ``optim``, ``run``, ``augment``, ``tricks``; a backbone's recipe) stay mappings: they go
as they are to `bof.config.build`, which checks them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from bof.config import TricksConfig
from bof.errors import ConfigError

# the preset's JSON schema, which the Snakefile validates presets against
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# How a cell's backbone was pretrained: the plain recipe, its mixup twin, or the control the paper
# does not have: the plain backbone trained with the mixup twin's recipe (as long), without mixup.
PRETRAININGS = ("plain", "mixup", "plain-long")


def pretraining_of(spec: dict) -> str:
    """A table entry's pretraining: ``pretraining: plain-long`` (a control), else ``pretrain_mixup``."""
    pretraining = spec.get("pretraining", "mixup" if spec.get("pretrain_mixup", False) else "plain")
    if pretraining not in PRETRAININGS:
        raise ConfigError(f"pretraining '{pretraining}' is not one of {list(PRETRAININGS)}")
    return pretraining


# --- the preset ---


@dataclass(frozen=True)
class ResourceRequest:
    """What a job's ``resources`` section asks for; ``cpus`` None: the preset's ``threads``."""

    gpus: int = 0
    cpus: int | None = None
    mem_mb: int = 4000
    runtime: int = 120  # minutes

    @classmethod
    def parse(cls, section: dict) -> ResourceRequest:
        return cls(**{f.name: int(section[f.name]) for f in dataclasses.fields(cls) if f.name in section})


@dataclass(frozen=True)
class DetectorSpec:
    """A preset's ``detectors.<name>``: the settings every row of its tables shares. A detector
    ``same_as`` another has nothing else (its runs are the other's)."""

    same_as: str | None = None
    model: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    augment: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    tricks: dict = field(default_factory=dict)  # the baseline row's
    pretrained: str = "pipeline"  # pipeline (the pretrain rule's backbone), imagenet or none
    random_shapes: dict = field(default_factory=dict)  # the range a row's `random_shapes` trick draws from
    mixup_off_last_epochs: int = 0  # a mixup row's, unless the row says
    resources: ResourceRequest = ResourceRequest()

    @classmethod
    def parse(cls, section: dict) -> DetectorSpec:
        plain = {key: section[key] for key in ("same_as", "pretrained", "mixup_off_last_epochs") if key in section}
        mappings = {key: dict(section[key]) for key in ("model", "optim", "augment", "run", "tricks") if key in section}
        return cls(
            **plain,
            **mappings,
            random_shapes=dict(section.get("random_shapes", {})),
            resources=ResourceRequest.parse(section.get("resources", {})),
        )


@dataclass(frozen=True)
class BackboneSpec:
    """A preset's ``pretrain.<backbone>``: the plain recipe (`PretrainConfig` keys), what its mixup
    twin changes (``mixup_recipe``), and the job's machine, which is not part of the recipe."""

    recipe: dict = field(default_factory=dict)
    mixup_recipe: dict = field(default_factory=dict)
    resources: ResourceRequest = ResourceRequest()

    @property
    def workers(self) -> int:
        return int(self.recipe.get("workers", 4))

    @classmethod
    def parse(cls, section: dict) -> BackboneSpec:
        recipe = {key: value for key, value in section.items() if key not in ("mixup_recipe", "resources")}
        return cls(recipe, dict(section.get("mixup_recipe", {})), ResourceRequest.parse(section.get("resources", {})))


@dataclass(frozen=True)
class Dataset:
    """A preset's ``dataset``: where the data is and, for ``synth``, the ``bof synth`` options."""

    kind: str  # synth, voc or coco
    root: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    classification: str  # ImageFolder root of backbone pretraining
    images: dict = field(default_factory=dict)  # COCO: the image folders, by split
    archives: tuple[str, ...] = ()
    mirror: str | None = None
    synth: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, section: dict) -> Dataset:
        return cls(
            kind=section["kind"],
            root=section["root"],
            train=tuple(section["train"]),
            val=tuple(section["val"]),
            classification=section["classification"],
            images=dict(section.get("images", {})),
            archives=tuple(section.get("archives", ())),
            mirror=section.get("mirror"),
            synth=dict(section.get("synth", {})),
        )


@dataclass(frozen=True)
class Budget:
    """One training length of a preset's ``budgets.<detector>``: the schedule every row of the
    detector's tables trains with at that length (one recipe per budget, chosen on the baseline)."""

    epochs: int
    step_epochs: tuple[float, ...] | None = None  # None: the detector's, unchanged
    val_every: int | None = None
    mixup_off_last_epochs: int | None = None

    @classmethod
    def parse(cls, section: dict) -> Budget:
        steps = section.get("step_epochs")
        return cls(
            epochs=int(section["epochs"]),
            step_epochs=None if steps is None else tuple(float(step) for step in steps),
            val_every=section.get("val_every"),
            mixup_off_last_epochs=section.get("mixup_off_last_epochs"),
        )

    def suffix(self) -> str:
        """What a budget adds to its detector's and its tables' names: ``_48e``."""
        return f"_{self.epochs}e"

    def applied(self, spec: DetectorSpec) -> DetectorSpec:
        """``spec`` trained at this length."""
        optim = {**spec.optim, "epochs": self.epochs}
        if self.step_epochs is not None:
            optim["step_epochs"] = list(self.step_epochs)
        run = dict(spec.run) if self.val_every is None else {**spec.run, "val_every": self.val_every}
        off = spec.mixup_off_last_epochs if self.mixup_off_last_epochs is None else self.mixup_off_last_epochs
        # a cluster job's time limit grows with the epochs (the detector's is for its own length)
        epochs = spec.optim.get("epochs")
        runtime = spec.resources.runtime * max(1.0, self.epochs / epochs) if epochs else spec.resources.runtime
        resources = dataclasses.replace(spec.resources, runtime=math.ceil(runtime))
        return dataclasses.replace(spec, optim=optim, run=run, mixup_off_last_epochs=off, resources=resources)


@dataclass(frozen=True)
class Figures:
    """A preset's ``figures``: the detector of Figures 5-7 (None: the matrix's default) and Figure 7's size."""

    detector: str | None = None
    examples: int = 4


# --- the tables ---


@dataclass(frozen=True)
class PairEntry:
    """One side of a ``pairs`` table's row (its baseline or its freebies), with the paper's value."""

    tricks: dict
    pretraining: str
    paper: float | None


@dataclass(frozen=True)
class TableRow:
    """A table's row. ``rows`` tables: ``tricks``; ``grid`` tables: ``pretraining`` (the columns hold
    the tricks); ``pairs`` tables: ``detector``, ``baseline`` and ``bof``."""

    name: str
    tricks: dict = field(default_factory=dict)
    pretraining: str = "plain"
    paper: float | None = None
    detector: str | None = None
    baseline: PairEntry | None = None
    bof: PairEntry | None = None


@dataclass(frozen=True)
class Column:
    """A ``grid`` table's column (its tricks on top of the table's), or a ``pairs`` table's title."""

    name: str
    tricks: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ControlSpec:
    """A grid table's control row: a pretraining run in the named columns (see ``matrix.controls``)."""

    name: str
    pretraining: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """One of ``config/tables.yaml``'s tables, less the rows the preset leaves out."""

    name: str
    title: str
    kind: str  # rows, pairs or grid
    metric: str  # voc07 or coco
    rows: tuple[TableRow, ...]
    detector: str | None = None  # rows and grid tables; a pairs table's rows name theirs
    tricks: dict = field(default_factory=dict)  # grid: shared by every cell
    baseline: str = "baseline"  # rows: the row every delta is taken against
    columns: tuple[Column, ...] = ()
    paper: tuple[tuple[float, ...], ...] | None = None  # grid: by row, then column
    controls: tuple[ControlSpec, ...] = ()
    base: str | None = None  # a budget's copy: the table of config/tables.yaml it trains at ``epochs``
    epochs: int | None = None

    @property
    def row_names(self) -> list[str]:
        return [row.name for row in self.rows]

    def row(self, name: str) -> TableRow:
        """The row called ``name`` (a KeyError naming it when there is none)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def stacked_on(self, row: TableRow) -> TableRow | None:
        """The row ``row`` adds one trick to: the latest earlier row whose tricks are ``row``'s less
        one (Table 3's "+ mixup" stacks on "+ class label smoothing", "+ cosine lr schedule" on the
        baseline); None for the baseline, a row that stacks on nothing and a table not of rows."""
        if self.kind != "rows":
            return None
        for candidate in reversed(self.rows[: self.rows.index(row)]):
            same = all(row.tricks.get(key) == value for key, value in candidate.tricks.items())
            if same and candidate.pretraining == row.pretraining and len(set(row.tricks) - set(candidate.tricks)) == 1:
                return candidate
        return None

    @property
    def detectors(self) -> list[str]:
        """The detectors the table trains (a pairs table: one per row)."""
        return [row.detector for row in self.rows] if self.kind == "pairs" else [self.detector]


def _pair_entry(spec: dict, paper: float | None) -> PairEntry:
    return PairEntry(dict(spec.get("tricks", {})), pretraining_of(spec), paper)


def _row(kind: str, entry: dict) -> TableRow:
    if kind == "pairs":
        paper = entry.get("paper") or (None, None)
        return TableRow(
            entry["name"],
            detector=entry["detector"],
            baseline=_pair_entry(entry["baseline"], paper[0]),
            bof=_pair_entry(entry["bof"], paper[1]),
        )
    tricks = entry["tricks"] if kind == "rows" else entry.get("tricks", {})  # a grid row's are its columns'
    return TableRow(entry["name"], dict(tricks), pretraining_of(entry), entry.get("paper"))


def _column(entry) -> Column:
    return Column(entry) if isinstance(entry, str) else Column(entry["name"], dict(entry.get("tricks", {})))


def parse_table(name: str, definition: dict, leave_out: list[str]) -> Table:
    """``definition`` (a table of ``tables.yaml``) without the rows named in ``leave_out``."""
    paper = definition.get("paper") if definition["kind"] == "grid" else None
    return Table(
        name=name,
        title=definition["title"],
        kind=definition["kind"],
        metric=definition["metric"],
        rows=tuple(_row(definition["kind"], row) for row in definition["rows"] if row["name"] not in leave_out),
        detector=definition.get("detector"),
        tricks=dict(definition.get("tricks", {})),
        baseline=definition.get("baseline", "baseline"),
        columns=tuple(_column(column) for column in definition.get("columns", [])),
        paper=None if paper is None else tuple(tuple(values) for values in paper),
        controls=tuple(
            ControlSpec(spec["name"], pretraining_of(spec), tuple(spec["columns"]))
            for spec in definition.get("controls", [])
        ),
    )


@dataclass(frozen=True)
class Preset:
    """A loaded preset: its settings and the tables it makes, typed."""

    path: Path  # the preset file, as given: errors name it
    name: str
    results: str  # the folder of every output
    run_seeds: tuple[int, ...]  # the preset's ``seeds``: what ``make run`` trains
    dataset: Dataset
    detectors: dict[str, DetectorSpec]
    pretrain: dict[str, BackboneSpec]
    tables: dict[str, Table]
    replication_seeds: tuple[int, ...] = ()  # a second, independent set (``make replicate``)
    replicate: bool = False  # train the replication seeds too
    leave_out: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rows not run, by table
    figures: Figures = Figures()
    run_controls: bool = False  # the preset's ``controls``: run the grid tables' control rows
    threads: int = 2  # CPU threads of a job that names none
    tables_path: Path | None = None  # where the table definitions were read
    budgets: dict[str, tuple[Budget, ...]] = field(default_factory=dict)  # training lengths, by detector

    @property
    def seeds(self) -> list[int]:
        """The seeds the pipeline trains: ``seeds``, and ``replication_seeds`` too with ``replicate``."""
        return [seed for half in self.seed_halves[: 2 if self.replicate else 1] for seed in half]

    @property
    def seed_halves(self) -> list[list[int]]:
        """``seeds`` (what ``make run`` trains) and, when the preset names them, ``replication_seeds``:
        a second, independent set the report pools with the first and checks each verdict against."""
        return [list(self.run_seeds)] + ([list(self.replication_seeds)] if self.replication_seeds else [])

    def with_seeds(self, seeds: list[int]) -> Preset:
        """This preset reading exactly ``seeds``: the report's view of one half, or of both pooled (not
        for building jobs: pretraining takes the first of ``seeds``). It still names the replication
        seeds when ``seeds`` holds none of them (the first half)."""
        replication = () if set(seeds) & set(self.replication_seeds) else self.replication_seeds
        return dataclasses.replace(self, run_seeds=tuple(seeds), replication_seeds=replication, replicate=False)

    def replicating(self) -> Preset:
        """This preset training its replication seeds too (``make replicate``, ``bof status --replicate``)."""
        _check_replication(self.path, self.replication_seeds, True)
        return dataclasses.replace(self, replicate=True)


def _check_replication(path: Path, replication_seeds, replicate: bool) -> None:
    if replicate and not replication_seeds:
        raise ConfigError(
            f"{path}: replicate asks for the replication seeds, but the preset names no replication_seeds"
        )


def _table(name: str, definitions: dict, leave_out: dict, tables_path: Path) -> Table:
    """`parse_table`, its errors naming the definitions' file and the table."""
    try:
        return parse_table(name, definitions[name], list(leave_out.get(name, ())))
    except KeyError as error:
        raise ConfigError(f"{tables_path}: {name}: a table entry has no {error}") from None
    except ConfigError as error:
        raise ConfigError(f"{tables_path}: {name}: {error}") from None


def parse_preset(path: Path, raw: dict, definitions: dict, tables_path: Path | None = None) -> Preset:
    """The typed preset of ``raw`` (its YAML, checked) with the tables it names of ``definitions``."""
    leave_out = {name: tuple(rows) for name, rows in raw.get("leave_out", {}).items()}
    budgets = {name: tuple(Budget.parse(b) for b in sections) for name, sections in raw.get("budgets", {}).items()}
    detectors, tables = with_budgets(
        path,
        {name: DetectorSpec.parse(section) for name, section in raw["detectors"].items()},
        {name: _table(name, definitions, leave_out, tables_path or path) for name in raw["tables"]},
        budgets,
    )
    return Preset(
        path=path,
        name=raw["name"],
        results=raw["results"],
        run_seeds=tuple(raw["seeds"]),
        dataset=Dataset.parse(raw["dataset"]),
        detectors=detectors,
        pretrain={name: BackboneSpec.parse(section) for name, section in raw["pretrain"].items()},
        tables=tables,
        replication_seeds=tuple(raw.get("replication_seeds", ())),
        replicate=bool(raw.get("replicate", False)),
        leave_out=leave_out,
        figures=Figures(**raw.get("figures", {})),
        run_controls=bool(raw.get("controls", False)),
        threads=int(raw.get("threads", 2)),
        tables_path=tables_path,
        budgets=budgets,
    )


def with_budgets(
    path: Path, detectors: dict[str, DetectorSpec], tables: dict[str, Table], budgets: dict[str, tuple[Budget, ...]]
) -> tuple[dict[str, DetectorSpec], dict[str, Table]]:
    """The detectors and tables a preset's ``budgets`` make: a detector with budgets becomes one
    detector per budget (``frcnn_r50_48e``: its settings, trained that long), and each table of
    it one table per budget (``table3_48e``), so that every row runs at every length and the rest
    of the pipeline sees plain detectors and tables."""
    for name, lengths in budgets.items():
        if name not in detectors:
            raise ConfigError(f"{path}: budgets names detector '{name}', which the preset does not define")
        epochs = [budget.epochs for budget in lengths]
        if len(set(epochs)) != len(epochs):
            raise ConfigError(f"{path}: budgets.{name}: epochs {epochs} repeat a length")
        users = [other for other, spec in detectors.items() if spec.same_as == name]
        if detectors[name].same_as is not None or users:
            raise ConfigError(f"{path}: budgets.{name}: a detector with budgets cannot be same_as another or have one")
    for name, table in tables.items():
        budgeted = [detector for detector in table.detectors if detector in budgets]
        if budgeted and len(budgeted) != len(table.detectors):
            raise ConfigError(
                f"{path}: {name} trains {sorted(set(table.detectors))}, only {sorted(set(budgeted))} with budgets:"
                " budgets apply to whole tables"
            )
        lengths = {detector: [budget.epochs for budget in budgets[detector]] for detector in budgeted}
        if len({tuple(epochs) for epochs in lengths.values()}) > 1:
            raise ConfigError(f"{path}: {name} trains detectors with different budgets {lengths}: a table has one")
    new_detectors = {}
    for name, spec in detectors.items():
        for budget in budgets.get(name, ()):
            new_detectors[name + budget.suffix()] = budget.applied(spec)
        if name not in budgets:
            new_detectors[name] = spec
    new_tables = {}
    for name, table in tables.items():
        detector = table.detectors[0] if table.detectors else None
        for budget in budgets.get(detector, ()):
            renamed = {d: d + budget.suffix() for d in budgets}  # a table's detectors share their lengths
            new_tables[name + budget.suffix()] = dataclasses.replace(
                table,
                name=name + budget.suffix(),
                title=f"{table.title}, {budget.epochs} epochs",
                detector=None if table.detector is None else renamed[table.detector],
                rows=tuple(
                    row if row.detector is None else dataclasses.replace(row, detector=renamed[row.detector])
                    for row in table.rows
                ),
                base=name,
                epochs=budget.epochs,
            )
        if detector not in budgets:
            new_tables[name] = table
    return new_detectors, new_tables


# --- reading and checking ---


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


def read_preset(
    path: str | Path,
    raw: dict | None = None,
    *,
    default_tables: str | Path | None = None,
    schema: str | Path | None = SCHEMA,
    tables: str | Path | None = None,
) -> Preset:
    """Read a preset (or take its already-loaded ``raw`` dict) and the tables it names: from
    ``tables`` when given (the file the pipeline read them from), else ``tables_file`` relative to
    the preset, else ``tables.yaml`` beside it, else ``default_tables`` (the workflow's own, for a
    preset kept elsewhere). Its keys are checked against ``schema`` (None: checked already), the
    tables' trick keys against `TricksConfig`. ``matrix.load_preset`` checks the rest."""
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
    if tables is not None:
        tables_path = Path(tables).resolve()
    try:
        definitions = yaml.safe_load(tables_path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{tables_path}: cannot read the table definitions ({error})") from None
    _check_tables(path, raw, definitions, tables_path)
    overlap = sorted(set(raw["seeds"]) & set(raw.get("replication_seeds", [])))
    if overlap:
        raise ConfigError(f"{path}: replication_seeds {overlap} are also in seeds: a replication needs other seeds")
    _check_replication(path, raw.get("replication_seeds"), raw.get("replicate"))
    _check_leave_out(path, raw, definitions)
    return parse_preset(path, raw, definitions, tables_path)


def _check_tables(path: Path, raw: dict, definitions: dict, tables_path: Path) -> None:
    """The tables ``raw`` names are defined and their trick keys are `TricksConfig`'s."""
    unknown = [name for name in raw["tables"] if name not in definitions]
    if unknown:
        raise ConfigError(f"{path}: tables {unknown} are not defined in {tables_path}")
    for name in raw["tables"]:
        for row, tricks in _table_tricks(definitions[name]):
            _check_trick_keys(tricks, TricksConfig, f"{tables_path}: {name}: {row}", "")


def _check_leave_out(path: Path, raw: dict, definitions: dict) -> None:
    """The rows ``leave_out`` names (a budget decision the preset states; REPORT.md lists what was
    left out) are rows of their tables."""
    for name in raw["tables"]:
        rows = [row["name"] for row in definitions[name]["rows"]]
        unknown = [row for row in raw.get("leave_out", {}).get(name, []) if row not in rows]
        if unknown:
            raise ConfigError(f"{path}: leave_out names rows {unknown} that {name} does not have")


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
