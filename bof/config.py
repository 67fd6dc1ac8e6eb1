"""Typed, frozen configuration built from YAML and checked at the edge.

``load_config(path)`` reads a YAML file with ``yaml.safe_load``, applies ``key.path=value``
overrides, and builds the dataclass tree; an unknown key, a wrong type or an impossible
value is a ``ConfigError`` that names the key and the file. The resolved config is
written next to every checkpoint and metrics file (``asdict``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bof.errors import ConfigError
from bof.io import finite_float

# The detectors' largest feature stride: input sizes and random training shapes are multiples of it.
STRIDE = 32
PUBLISHED_BACKBONES = ("darknet53", "resnet50", "resnet101")  # with published ImageNet weights (bof.models.published)

# The largest seed: every use survives it (``torch.Generator().manual_seed(seed * 100_003 + epoch)``
# must stay below 2**64; numpy's SeedSequence and legacy seeding take 32-bit words).
SEED_MAX = 2**32 - 1


def check_seed(seed: int, where: str = "seed") -> None:
    """A ``ConfigError`` naming ``where`` unless ``0 <= seed <= SEED_MAX``."""
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{where} must be in [0, 2**32 - 1 = {SEED_MAX}], got {seed}")


@dataclass(frozen=True)
class DataConfig:
    """Where the images and annotations are. VOC: ``root`` is the VOCdevkit and ``train``/``val``
    are ``YEAR:SPLIT`` lists. COCO: ``root`` is the image folder of each annotation file's
    ``file_name``s and ``train``/``val`` are annotation files."""

    format: Literal["voc", "coco"] = "voc"
    root: str = "data/synth/VOCdevkit"
    train: tuple[str, ...] = ("2007:trainval",)
    val: tuple[str, ...] = ("2007:test",)
    val_root: str | None = None  # COCO: the validation images' folder, when not ``root``
    on_error: Literal["strict", "skip"] = "strict"

    def __post_init__(self) -> None:
        if not self.train or not self.val:
            raise ConfigError("data.train and data.val must each name at least one image set")
        if self.format == "voc":
            for item in (*self.train, *self.val):
                if item.count(":") != 1 or not all(item.split(":")):
                    raise ConfigError(f"data: VOC image sets are written YEAR:SPLIT, got {item!r}")
        elif len(self.train) != 1 or len(self.val) != 1:
            raise ConfigError("data: COCO takes one annotation file each for train and val")


def check_anchors(anchors, where: str) -> tuple[tuple[float, float], ...]:
    """YOLOv3 anchors as 9 positive (w, h) pairs (3 per level), or a ``ConfigError`` naming ``where``."""
    pairs = anchors if isinstance(anchors, (list, tuple)) else []
    if len(pairs) != 9 or not all(
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in pair)
        for pair in pairs
    ):
        raise ConfigError(f"model.anchors ({where}): need 9 positive (w, h) pairs, 3 per level, got {anchors!r}")
    return tuple((float(w), float(h)) for w, h in pairs)


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["yolov3", "faster_rcnn"] = "yolov3"
    backbone: Literal["darknet53", "resnet50", "resnet101", "small_resnet"] = "darknet53"
    width: float = 1.0  # channel multiplier (darknet53, small_resnet)
    depth: float = 1.0  # block-count multiplier (darknet53)
    input_size: int = 416  # YOLOv3 test size (and training size without random shapes)
    min_size: int = 600  # Faster R-CNN shorter side
    max_size: int = 1000  # Faster R-CNN longer side at most
    # a `bof pretrain` backbone.pt, "imagenet" (the published weights, bof.models.published), or none
    pretrained: str | None = None
    # YOLOv3: start objectness at this probability (not the reference's 0.5; for CPU presets)
    objectness_prior: float | None = None
    # YOLOv3 anchors, fixed pixels whatever the input size: 9 (w, h) pairs, level-major, or
    # the path of a `bof anchors` file (k-means on the training set); none = the paper's nine
    anchors: tuple[tuple[float, ...], ...] | str | None = None
    test_size: int | None = None  # YOLOv3 evaluation size; none = input_size (COCO: the paper's 608)
    # Faster R-CNN: the paper's C4 network (GluonCV) unless fpn; test-time settings of GluonCV's VOC
    # models by default (its COCO models: nms_iou 0.5, rpn_min_size 0, rpn_test_proposals 1000)
    fpn: bool = False
    rpn_min_size: float = 16.0
    rpn_test_proposals: int = 300
    nms_iou: float | None = None  # per-class NMS at test time; none = the detector's (YOLOv3 0.45, Faster R-CNN 0.3)

    def __post_init__(self) -> None:
        if self.arch == "yolov3" and self.backbone != "darknet53":
            raise ConfigError(f"model: yolov3 uses the darknet53 backbone, got {self.backbone!r}")
        if self.arch == "faster_rcnn" and self.backbone == "darknet53":
            raise ConfigError("model: faster_rcnn takes a resnet50, resnet101 or small_resnet backbone")
        if not (self.width > 0 and self.depth > 0):
            raise ConfigError(f"model.width and model.depth must be > 0, got {self.width}, {self.depth}")
        if self.input_size % STRIDE or self.input_size <= 0:
            raise ConfigError(f"model.input_size must be a positive multiple of {STRIDE}, got {self.input_size}")
        if self.objectness_prior is not None and not 0 < self.objectness_prior < 1:
            raise ConfigError(f"model.objectness_prior must be in (0, 1), got {self.objectness_prior}")
        if self.pretrained == "imagenet" and self.backbone not in PUBLISHED_BACKBONES:
            raise ConfigError(
                f"model.pretrained: published ImageNet weights exist for {', '.join(PUBLISHED_BACKBONES)}, not {self.backbone}"
            )
        if self.pretrained == "imagenet" and (self.width, self.depth) != (1.0, 1.0):
            raise ConfigError("model.pretrained: the published ImageNet weights are for width 1 and depth 1")
        if self.nms_iou is not None and not 0 < self.nms_iou <= 1:
            raise ConfigError(f"model.nms_iou must be in (0, 1], got {self.nms_iou}")
        if not self.rpn_min_size >= 0 or self.rpn_test_proposals < 1:
            raise ConfigError("model: need rpn_min_size >= 0 and rpn_test_proposals >= 1")
        if self.test_size is not None and (self.test_size % STRIDE or self.test_size <= 0):
            raise ConfigError(f"model.test_size must be a positive multiple of {STRIDE}, got {self.test_size}")
        if isinstance(self.anchors, tuple):
            check_anchors(self.anchors, "config")
        # the model takes equal sizes, the training resize (torchvision's) needs max_size above min_size
        if not 0 < self.min_size < self.max_size:
            raise ConfigError(f"model: need 0 < min_size < max_size, got {self.min_size}, {self.max_size}")


MixupMode = Literal["off", "fixed", "beta"]


@dataclass(frozen=True)
class MixupConfig:
    """Which mixup variant of Table 1 to draw, and when (`bof.tricks.mixup.DetectionMixup` draws it).

    ``mode``: ``off``; ``fixed`` (lam = 0.5, "0.5:0.5 evenly"); ``beta`` (lam ~ Beta(alpha, beta)).
    ``weighted``: boxes weigh ``lam`` / ``1 - lam`` in the loss; otherwise every box weighs 1.
    ``off_last_epochs``: mixup is switched off for the last N epochs of ``epochs``.
    ``loss_scale``: the whole training loss is multiplied by this while mixup is on (GluonCV's
    Faster R-CNN: ``mix_ratio = 0.5`` with its even mix; 1 for YOLOv3).
    """

    mode: MixupMode = "off"
    alpha: float = 1.5
    beta: float = 1.5
    weighted: bool = True
    off_last_epochs: int = 20
    loss_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("off", "fixed", "beta"):
            raise ConfigError(f"mixup mode must be 'off', 'fixed' or 'beta', got {self.mode!r}")
        if self.mode == "beta" and (self.alpha <= 0 or self.beta <= 0):
            raise ConfigError(f"mixup beta parameters must be > 0, got ({self.alpha}, {self.beta})")
        if self.off_last_epochs < 0:
            raise ConfigError(f"mixup off_last_epochs must be >= 0, got {self.off_last_epochs}")
        if not self.loss_scale > 0:
            raise ConfigError(f"mixup loss_scale must be > 0, got {self.loss_scale}")

    def active(self, epoch: int, epochs: int) -> bool:
        return self.mode != "off" and epoch < epochs - self.off_last_epochs

    def slug(self) -> str:
        """Its part of a trick combination's name: ``mix-beta1.5-1.5``, ``mix-fixed-unweighted-scale0.5``, ``nomix``."""
        if self.mode == "off":
            return "nomix"
        name = "mix-fixed" if self.mode == "fixed" else f"mix-beta{self.alpha:g}-{self.beta:g}"
        name += "" if self.weighted else "-unweighted"
        return name + (f"-scale{self.loss_scale:g}" if self.loss_scale != 1.0 else "")


@dataclass(frozen=True)
class RandomShapesConfig:
    enabled: bool = False
    min: int = 320
    max: int = 608
    interval: int = 10

    def __post_init__(self) -> None:
        if self.min % STRIDE or self.max % STRIDE or not 0 < self.min <= self.max:
            raise ConfigError(
                f"tricks.random_shapes: min and max must be multiples of {STRIDE} with 0 < min <= max, got {self.min}..{self.max}"
            )
        if self.interval < 1:
            raise ConfigError(f"tricks.random_shapes.interval must be >= 1, got {self.interval}")


@dataclass(frozen=True)
class BatchNormConfig:
    mode: Literal["plain", "sync", "group"] = "plain"
    group_size: int = 8

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ConfigError(f"tricks.batchnorm.group_size must be >= 1, got {self.group_size}")

    def slug(self) -> str:
        return f"bn-{self.mode}" + (str(self.group_size) if self.mode == "group" else "")


@dataclass(frozen=True)
class AugmentConfig:
    """The single-stage augmentation's recipe, shared by every row of a table (not a trick switch)."""

    max_expand_ratio: float = 4.0  # zoom-out canvas up to this many times the image (GluonCV random_expand)

    def __post_init__(self) -> None:
        if not self.max_expand_ratio >= 1:
            raise ConfigError(f"augment.max_expand_ratio must be >= 1, got {self.max_expand_ratio}")


@dataclass(frozen=True)
class TricksConfig:
    """The switches of the paper's tables; each enters training through data, loss, schedule or model."""

    mixup: MixupConfig = field(default_factory=MixupConfig)
    label_smoothing: bool = False
    augmentation: bool = True
    random_shapes: RandomShapesConfig = field(default_factory=RandomShapesConfig)
    lr_schedule: Literal["cosine", "step"] = "step"
    batchnorm: BatchNormConfig = field(default_factory=BatchNormConfig)

    def slugs(self) -> dict[str, str]:
        """Each trick's part of a combination's name, in the names' order: a combination is named
        by the parts that differ from its detector's baseline tricks (bof.pipeline.matrix.combo_name). A new
        trick is a field here, its line below, its kernels in bof/tricks and a row of tables.yaml."""
        return {
            "augmentation": "aug" if self.augmentation else "noaug",
            "batchnorm": self.batchnorm.slug(),
            "random_shapes": "shapes" if self.random_shapes.enabled else "noshapes",
            "lr_schedule": self.lr_schedule,
            "label_smoothing": "smooth" if self.label_smoothing else "nosmooth",
            "mixup": self.mixup.slug(),
        }


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 12
    batch_size: int = 16  # global, over all processes
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0  # warmup starts at this fraction of lr (GluonCV: YOLOv3 0, Faster R-CNN 1/3)
    step_epochs: tuple[float, ...] = ()
    step_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"optim.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"optim.batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1):
            raise ConfigError(
                f"optim: need lr > 0, weight_decay >= 0, 0 <= momentum < 1; got {self.lr}, {self.weight_decay}, {self.momentum}"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"optim.warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if not 0 <= self.warmup_start <= 1:
            raise ConfigError(f"optim.warmup_start must be in [0, 1], got {self.warmup_start}")
        if any(not 0 < e <= self.epochs for e in self.step_epochs) or list(self.step_epochs) != sorted(
            self.step_epochs
        ):
            raise ConfigError(
                f"optim.step_epochs must be increasing and within (0, epochs], got {list(self.step_epochs)}"
            )
        if not 0 < self.step_factor <= 1:  # the lr is multiplied by it at each step (GluonCV's lr_decay 0.1)
            raise ConfigError(f"optim.step_factor must be in (0, 1], got {self.step_factor}")


@dataclass(frozen=True)
class RunConfig:
    workers: int = 2
    val_every: int = 1  # epochs between validation mAP points (Figure 6b); 0 = only at the end
    amp: bool = True  # mixed precision, CUDA only
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.workers < 0 or self.val_every < 0 or self.log_every < 1:
            raise ConfigError("run: workers and val_every must be >= 0 and log_every >= 1")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tricks: TricksConfig = field(default_factory=TricksConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        shapes = self.tricks.random_shapes
        if shapes.enabled and self.model.arch != "yolov3":
            raise ConfigError("tricks.random_shapes applies to single-stage detectors (yolov3) only")
        if self.tricks.batchnorm.mode == "group" and self.optim.batch_size % self.tricks.batchnorm.group_size:
            raise ConfigError(
                f"tricks.batchnorm.group_size ({self.tricks.batchnorm.group_size}) must divide optim.batch_size ({self.optim.batch_size})"
            )


@dataclass(frozen=True)
class PretrainConfig:
    """`bof pretrain`'s recipe: GluonCV's ImageNet classification training (bof.engine.pretrain)."""

    seed: int = 0
    data: str = "data/synth/classification"
    backbone: Literal["darknet53", "resnet50", "resnet101", "small_resnet"] = "darknet53"
    width: float = 1.0
    depth: float = 1.0
    image_size: int = 224
    epochs: int = 120
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 5
    label_smoothing: float = 0.1
    decay_norm_and_bias: bool = False  # GluonCV --no-wd: no weight decay on BN and biases
    crop_scale_min: float = 0.08  # RandomResizedCrop's smallest area fraction (GluonCV min_random_area)
    color_jitter: float = 0.4  # brightness, contrast and saturation jitter
    lighting: float = 0.1  # AlexNet-style PCA lighting noise (GluonCV pca_noise)
    mixup: bool = False
    mixup_alpha: float = 0.2
    workers: int = 4
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 16 or self.workers < 0:
            raise ConfigError("pretrain: epochs and batch_size must be >= 1, image_size >= 16 and workers >= 0")
        if not (self.width > 0 and self.depth > 0):
            raise ConfigError(f"pretrain: width and depth must be > 0, got {self.width}, {self.depth}")
        if not (self.lr > 0 and 0 <= self.label_smoothing < 1 and self.mixup_alpha > 0):
            raise ConfigError("pretrain: need lr > 0, 0 <= label_smoothing < 1 and mixup_alpha > 0")
        if not (self.weight_decay >= 0 and 0 < self.momentum < 1):  # Nesterov SGD needs a momentum
            raise ConfigError(
                f"pretrain: need weight_decay >= 0 and 0 < momentum < 1, got {self.weight_decay}, {self.momentum}"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"pretrain.warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if not (0 < self.crop_scale_min <= 1 and self.color_jitter >= 0 and self.lighting >= 0):
            raise ConfigError("pretrain: need 0 < crop_scale_min <= 1, color_jitter >= 0 and lighting >= 0")


# --- building dataclasses from plain data, with errors that name the key ---


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _convert(value: Any, annotation, where: str):
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(item, args[0], f"{where}[{index}]") for index, item in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        number = finite_float(value)
        if number is None:  # YAML's .nan and .inf, or 1.0e400
            raise ConfigError(f"{where}: expected a finite number, got {value!r:.40}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(annotation)}")


def build(cls, data: dict, where: str = ""):
    """``cls(**data)`` with every key checked against the fields and converted to its type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    values = {key: _convert(value, hints[key], f"{where}.{key}" if where else key) for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{where + ': ' if where else ''}{error}") from None


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"override {dotted}: '{key}' is not a section")
    data[last] = value


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def load_config(path: str | Path | None, overrides: list[str] = (), cls=TrainConfig, *, text: str | None = None):
    """Build ``cls`` from a YAML file (or defaults, or YAML/JSON ``text``) plus ``key.path=value``
    overrides (values parsed as YAML, so ``optim.epochs=3`` is an integer)."""
    data: dict = {}
    if text is not None:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config text is not valid YAML/JSON ({_yaml_problem(error)})") from None
        if not isinstance(data, dict):
            raise ConfigError("config text: top level must be a mapping")
    elif path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file is missing") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    for item in overrides:
        key, separator, text = item.partition("=")
        if not separator:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: not valid YAML ({_yaml_problem(error)})") from None
        _set(data, key.strip(), value)
    try:
        return build(cls, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path else str(error)) from None


def to_dict(config) -> dict:
    """JSON/YAML-ready dict of a config (tuples as lists)."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
