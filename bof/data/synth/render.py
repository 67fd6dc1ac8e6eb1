"""Rendering of one synthetic scene: textured background, clutter, occluding objects.

All randomness comes from the ``numpy.random.Generator`` passed in, so a scene is a
pure function of (seed, image index) and the dataset is byte-identical per seed.
Boxes follow the Pascal VOC annotation guidelines: they cover the *visible* pixels
of an object (after occlusion and the image border), ``truncated`` marks objects cut
by the border and ``difficult`` marks objects that are tiny or mostly hidden.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bof.data.synth.shapes import SHAPE_CLASSES, place


@dataclass(frozen=True)
class SceneConfig:
    """How a scene is drawn; sizes are in pixels."""

    num_classes: int = 10
    shapes: tuple[int, ...] = ()  # label -> index into SHAPE_CLASSES; () = the first num_classes
    image_size: int = 256  # longer side of the largest images
    min_object_size: float = 8.0
    max_objects: int = 6
    clutter: int = 6  # most non-object distractors behind the objects (at least 1 when > 0)
    occluders: int = 2  # most distractors drawn over the objects
    inside: float = 0.0  # 0: object centres anywhere; 1: at least half an object size from the border
    difficult_visible_fraction: float = 0.3  # less visible than this -> difficult
    difficult_min_side: int = 8  # visible box thinner than this -> difficult
    min_visible_fraction: float = 0.06  # less visible than this -> not annotated


@dataclass(frozen=True)
class SceneObject:
    """One annotated object. ``box`` is VOC's 1-based inclusive (xmin, ymin, xmax, ymax)."""

    label: int
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool


def image_shape(rng: np.random.Generator, image_size: int) -> tuple[int, int]:
    """(height, width) with VOC-like variety: mostly landscape, short/long in [0.6, 1]."""
    longer = int(round(image_size * rng.uniform(0.8, 1.0)))
    shorter = int(round(longer * rng.uniform(0.6, 1.0)))
    return (shorter, longer) if rng.random() < 0.7 else (longer, shorter)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0))
    return np.array(rgb) * 255


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float [H, W, 3] in 0..255: a gradient, blotchy low-frequency noise and grain."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    start, end = _random_colour(rng), _random_colour(rng)
    image = start + ramp[..., None] * (end - start)

    cells = int(rng.integers(3, 12))
    blotches = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
    blotches = np.stack(
        [
            np.asarray(Image.fromarray(blotches[..., c], mode="F").resize((width, height), Image.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    image += blotches * rng.uniform(10, 60)
    image += rng.standard_normal(size=(height, width, 1), dtype=np.float32) * rng.uniform(2, 12)
    return image


def draw_clutter(rng: np.random.Generator, canvas: Image.Image, count: int) -> Image.Image:
    """Non-object distractors: lines, squiggles, irregular blobs and arcs. Returns their mask."""
    width, height = canvas.size
    mask = Image.new("L", canvas.size, 0)
    pen, mask_pen = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for _ in range(count):
        colour = tuple(int(c) for c in _random_colour(rng))
        kind = rng.integers(4)
        stroke = int(rng.integers(1, 4))
        if kind == 0:  # straight line
            xy = [tuple(p) for p in rng.uniform(0, 1, size=(2, 2)) * (width, height)]
            pen.line(xy, fill=colour, width=stroke)
            mask_pen.line(xy, fill=255, width=stroke)
        elif kind == 1:  # squiggle
            start = rng.uniform(0, 1, size=2) * (width, height)
            steps = rng.normal(0, 0.06 * max(width, height), size=(int(rng.integers(4, 10)), 2))
            xy = [tuple(p) for p in start + np.cumsum(steps, axis=0)]
            pen.line(xy, fill=colour, width=stroke, joint="curve")
            mask_pen.line(xy, fill=255, width=stroke, joint="curve")
        elif kind == 2:  # irregular blob: random radii, so never a regular class shape
            n = int(rng.integers(6, 12))
            angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
            radii = rng.uniform(0.3, 1.0, size=n) * rng.uniform(3, 0.12 * min(width, height) + 4)
            centre = rng.uniform(0, 1, size=2) * (width, height)
            xy = [tuple(p) for p in centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)]
            pen.polygon(xy, fill=colour)
            mask_pen.polygon(xy, fill=255)
        else:  # arc
            centre = rng.uniform(0, 1, size=2) * (width, height)
            radius = rng.uniform(5, 0.3 * min(width, height) + 6)
            box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
            start = float(rng.uniform(0, 360))
            end = start + float(rng.uniform(30, 200))
            pen.arc(box, start, end, fill=colour, width=stroke)
            mask_pen.arc(box, start, end, fill=255, width=stroke)
    return mask


def _object_mask(parts, *, shape: tuple[int, int], pad: int, center, size, aspect, angle, outline: int) -> np.ndarray:
    """Boolean mask [H + 2*pad, W + 2*pad] of one object, drawn on a padded canvas so
    that the part outside the image can be measured (truncation, visible fraction)."""
    height, width = shape
    mask = Image.new("1", (width + 2 * pad, height + 2 * pad), 0)
    pen = ImageDraw.Draw(mask)
    shifted = (center[0] + pad, center[1] + pad)
    for vertices, solid in parts:
        xy = [tuple(p) for p in place(vertices, center=shifted, size=size, aspect=aspect, angle=angle)]
        if outline and solid:
            pen.polygon(xy, fill=0, outline=1, width=outline)
        else:
            pen.polygon(xy, fill=1 if solid else 0)
    return np.asarray(mask, dtype=bool)


def render_scene(rng: np.random.Generator, config: SceneConfig) -> tuple[np.ndarray, list[SceneObject]]:
    """Draw one detection scene. Returns uint8 [H, W, 3] and its annotated objects."""
    height, width = image_shape(rng, config.image_size)
    image = textured_background(rng, height, width)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    behind = int(rng.integers(1, max(config.clutter, 1) + 1))  # the same draws whatever the setting
    draw_clutter(rng, canvas, behind if config.clutter > 0 else 0)
    pixels = np.asarray(canvas, dtype=np.float32).copy()

    owner = np.full((height, width), -1, dtype=np.int16)
    drawn: list[tuple[int, int, int, bool]] = []  # (label, full pixel count, in-image count, truncated)
    num_objects = int(rng.integers(1, config.max_objects + 1))
    max_size = 0.9 * min(height, width)
    for _ in range(num_objects):
        label = int(rng.integers(config.num_classes))
        shape_class = SHAPE_CLASSES[config.shapes[label] if config.shapes else label]
        size = float(math.exp(rng.uniform(math.log(config.min_object_size), math.log(max_size))))
        jitter = math.log(shape_class.aspect_jitter)
        aspect = float(math.exp(rng.uniform(-jitter, jitter)))
        angle = float(rng.uniform(0, 2 * math.pi))
        margin = config.inside * size / 2
        center = (
            float(rng.uniform(min(margin, width / 2), max(width - margin, width / 2))),
            float(rng.uniform(min(margin, height / 2), max(height - margin, height / 2))),
        )
        outline = 0
        if shape_class.outline_ok and size >= 24 and rng.random() < 0.2:
            outline = max(2, int(size * rng.uniform(0.08, 0.15)))
        pad = int(size) + 2
        full = _object_mask(
            shape_class.parts, shape=(height, width), pad=pad, center=center,
            size=size, aspect=aspect, angle=angle, outline=outline,
        )  # fmt: skip
        inside = full[pad : pad + height, pad : pad + width]
        full_count, inside_count = int(full.sum()), int(inside.sum())
        if inside_count == 0:
            continue
        colour = _random_colour(rng)
        under = pixels[inside].mean(axis=0)
        if abs(colour.mean() - under.mean()) < 40:  # keep most objects visible against their surround
            colour = 255 - colour
        shade = rng.uniform(0.85, 1.15)
        pixels[inside] = np.clip(colour * shade, 0, 255)
        owner[inside] = len(drawn)
        drawn.append((label, full_count, inside_count, inside_count < 0.98 * full_count))

    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    occluders = draw_clutter(rng, canvas, int(rng.integers(0, config.occluders + 1)))  # clutter in front
    owner[np.asarray(occluders) > 0] = -1
    blur = rng.uniform(0, 0.9)
    if blur > 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    grain = rng.standard_normal(size=(height, width, 3), dtype=np.float32) * rng.uniform(1, 6)
    result = np.clip(np.asarray(canvas, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return result, _annotate(owner, drawn, config)


def _annotate(owner: np.ndarray, drawn: list[tuple[int, int, int, bool]], config: SceneConfig) -> list[SceneObject]:
    objects = []
    for index, (label, full_count, _, truncated) in enumerate(drawn):
        ys, xs = np.nonzero(owner == index)
        visible_fraction = len(xs) / full_count
        if visible_fraction < config.min_visible_fraction or len(xs) < 4:
            continue
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        thinnest = min(box[2] - box[0], box[3] - box[1]) + 1
        difficult = visible_fraction < config.difficult_visible_fraction or thinnest < config.difficult_min_side
        objects.append(SceneObject(label=label, box=box, truncated=truncated, difficult=difficult))
    return objects


def render_single_object(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A square classification image [size, size, 3] holding one object of ``SHAPE_CLASSES[label]``."""
    image = textured_background(rng, size, size)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw_clutter(rng, canvas, int(rng.integers(0, 4)))
    pixels = np.asarray(canvas, dtype=np.float32).copy()
    shape_class = SHAPE_CLASSES[label]
    object_size = size * rng.uniform(0.45, 0.9)
    jitter = math.log(shape_class.aspect_jitter)
    center = (size / 2 + rng.uniform(-0.15, 0.15) * size, size / 2 + rng.uniform(-0.15, 0.15) * size)
    outline = max(2, int(object_size * 0.12)) if shape_class.outline_ok and rng.random() < 0.2 else 0
    mask = _object_mask(
        shape_class.parts, shape=(size, size), pad=0, center=center, size=object_size,
        aspect=float(math.exp(rng.uniform(-jitter, jitter))), angle=float(rng.uniform(0, 2 * math.pi)), outline=outline,
    )  # fmt: skip
    colour = _random_colour(rng)
    if abs(colour.mean() - pixels[mask].mean()) < 40:
        colour = 255 - colour
    pixels[mask] = colour
    grain = rng.standard_normal(size=pixels.shape, dtype=np.float32) * rng.uniform(1, 6)
    return np.clip(pixels + grain, 0, 255).astype(np.uint8)
