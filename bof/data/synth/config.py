"""Settings of ``bof synth`` (no heavy imports: the CLI reads its defaults at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from bof.data.synth.render import SceneConfig
from bof.data.synth.shapes import MAX_CLASSES, SHAPE_INDEX, class_names
from bof.errors import ConfigError


def parse_classes(value: str | int) -> tuple[int, tuple[str, ...]]:
    """``bof synth --classes``: a count (the first K classes) or comma-separated names ->
    (num_classes, class_names)."""
    names = tuple(name.strip() for name in str(value).split(",") if name.strip())
    if len(names) == 1 and names[0].isdigit():
        return int(names[0]), ()
    return len(names), names


@dataclass(frozen=True)
class SynthConfig:
    """Settings of ``bof synth``; checked on construction."""

    num_images: int = 2000
    image_size: int = 256
    num_classes: int = 10
    class_names: tuple[str, ...] = ()  # which shapes, in label order; () = the first num_classes
    seed: int = 0
    test_fraction: float = 0.5
    val_fraction: float = 0.5  # of trainval, as VOC2007 splits it
    max_objects: int = 6
    min_object_size: float = 8.0
    clutter: int = 6  # most distractors behind the objects (0: none)
    occluders: int = 2  # most distractors over the objects
    inside: float = 0.0  # 0: objects anywhere (often cut by the border); 1: centred at least half a size in
    cls_images_per_class: int = 200
    cls_image_size: int = 64
    cls_val_fraction: float = 0.2
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        problems = []
        if self.num_images < 4:
            problems.append(f"num_images must be at least 4 (one per split), got {self.num_images}")
        if self.image_size < 32:
            problems.append(f"image_size must be at least 32 pixels, got {self.image_size}")
        if not 1 <= self.num_classes <= MAX_CLASSES:
            problems.append(f"classes must be between 1 and {MAX_CLASSES}, got {self.num_classes}")
        if self.class_names:
            unknown = [name for name in self.class_names if name not in SHAPE_INDEX]
            if unknown:
                problems.append(f"unknown class names {unknown} (known: {', '.join(SHAPE_INDEX)})")
            if len(set(self.class_names)) != len(self.class_names):
                problems.append(f"class names repeated in {list(self.class_names)}")
            if len(self.class_names) != self.num_classes:
                problems.append(f"{len(self.class_names)} class names given for {self.num_classes} classes")
        if self.seed < 0:
            problems.append(f"seed must be non-negative, got {self.seed}")
        for name in ("test_fraction", "val_fraction", "cls_val_fraction"):
            if not 0 < getattr(self, name) < 1:
                problems.append(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.max_objects < 1:
            problems.append(f"max_objects must be at least 1, got {self.max_objects}")
        if not 1 <= self.min_object_size <= self.image_size / 4:
            problems.append(f"min_object_size must be in [1, image_size/4], got {self.min_object_size}")
        if self.clutter < 0 or self.occluders < 0 or not 0 <= self.inside <= 1:
            problems.append("clutter and occluders must be >= 0 and inside in [0, 1]")
        if self.cls_images_per_class < 2:
            problems.append(f"cls_images_per_class must be at least 2, got {self.cls_images_per_class}")
        if self.cls_image_size < 16:
            problems.append(f"cls_image_size must be at least 16, got {self.cls_image_size}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def names(self) -> list[str]:
        """The classes in label order."""
        return list(self.class_names) or class_names(self.num_classes)

    @property
    def scene(self) -> SceneConfig:
        return SceneConfig(
            num_classes=self.num_classes,
            shapes=tuple(SHAPE_INDEX[name] for name in self.names),
            image_size=self.image_size,
            min_object_size=self.min_object_size,
            max_objects=self.max_objects,
            clutter=self.clutter,
            occluders=self.occluders,
            inside=self.inside,
        )
