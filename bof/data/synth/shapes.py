"""Class geometry of the synthetic dataset.

Each class is a set of polygons in an object frame whose extent is about [-1, 1]^2:
polygons marked ``solid`` are painted, the others are cut out again (the hole of a
ring, the bite of a crescent). Colour, scale, aspect ratio and rotation vary per
object; what stays fixed per class is this geometry, so the class must be read
from shape, not colour. Neighbouring classes are chosen to be confusable
(pentagon/hexagon, circle/octagon, square/diamond, star/cross, ...), so the
detector has to classify, not only localise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShapeClass:
    """One synthetic object class.

    ``aspect_jitter`` bounds the random anisotropic scale in the object frame; it is
    kept small for classes whose identity depends on their proportions (a circle
    stretched too far would be an ellipse). ``outline_ok`` says whether the class
    may be drawn as an outline only without turning into another class.
    """

    name: str
    parts: tuple[tuple[np.ndarray, bool], ...]  # (vertices [N, 2], solid)
    aspect_jitter: float = 1.35
    outline_ok: bool = True


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2, ratio_y: float = 1.0) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * ratio_y * np.sin(angles)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _poly(*xy: float) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    xy = np.stack([x, y], axis=1)
    return xy / np.abs(xy).max()


def _semicircle(n: int = 32) -> np.ndarray:
    t = np.linspace(math.pi, 2 * math.pi, n)
    arc = np.stack([np.cos(t), np.sin(t) + 0.5], axis=1)
    return arc


_CIRCLE = _regular(48)

# Order matters: the first K classes are used, so confusable pairs sit together and
# the default K=10 already holds five of them.
SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("circle", ((_CIRCLE, True),), aspect_jitter=1.08),
    ShapeClass("octagon", ((_regular(8, phase=math.pi / 8), True),), aspect_jitter=1.08),
    ShapeClass("square", ((_regular(4, phase=math.pi / 4), True),), aspect_jitter=1.1),
    ShapeClass("diamond", ((_regular(4, phase=0.0, ratio_y=0.55), True),), aspect_jitter=1.15),
    ShapeClass("pentagon", ((_regular(5), True),), aspect_jitter=1.1),
    ShapeClass("hexagon", ((_regular(6), True),), aspect_jitter=1.1),
    ShapeClass("star", ((_star(5, 0.42), True),), aspect_jitter=1.15),
    ShapeClass(
        "cross",
        (
            (
                _poly(
                    -0.3,
                    -1,
                    0.3,
                    -1,
                    0.3,
                    -0.3,
                    1,
                    -0.3,
                    1,
                    0.3,
                    0.3,
                    0.3,
                    0.3,
                    1,
                    -0.3,
                    1,
                    -0.3,
                    0.3,
                    -1,
                    0.3,
                    -1,
                    -0.3,
                    -0.3,
                    -0.3,
                ),
                True,
            ),
        ),
        aspect_jitter=1.15,
    ),
    ShapeClass("triangle", ((_regular(3, ratio_y=1.0), True),), aspect_jitter=1.25),
    ShapeClass("arrow", ((_poly(-1, -0.25, 0.2, -0.25, 0.2, -0.7, 1, 0, 0.2, 0.7, 0.2, 0.25, -1, 0.25), True),)),
    ShapeClass("ring", ((_CIRCLE, True), (_regular(48, radius=0.55), False)), aspect_jitter=1.08, outline_ok=False),
    ShapeClass("crescent", ((_CIRCLE, True), (_regular(48, radius=0.85) + [0.45, -0.1], False)), outline_ok=False),
    ShapeClass("ellipse", ((_regular(48, ratio_y=0.5), True),), aspect_jitter=1.15),
    ShapeClass("semicircle", ((_semicircle(), True),), aspect_jitter=1.15),
    ShapeClass("heart", ((_heart(), True),), aspect_jitter=1.15),
    ShapeClass("trapezoid", ((_poly(-1, 0.6, 1, 0.6, 0.45, -0.6, -0.45, -0.6), True),)),
    ShapeClass(
        "t_shape", ((_poly(-1, -1, 1, -1, 1, -0.45, 0.27, -0.45, 0.27, 1, -0.27, 1, -0.27, -0.45, -1, -0.45), True),)
    ),
    ShapeClass("l_shape", ((_poly(-0.7, -1, -0.15, -1, -0.15, 0.45, 0.7, 0.45, 0.7, 1, -0.7, 1), True),)),
    ShapeClass("star6", ((_star(6, 0.55), True),), aspect_jitter=1.15),
    ShapeClass("chevron", ((_poly(-1, -0.8, 0, 0.1, 1, -0.8, 1, -0.1, 0, 0.8, -1, -0.1), True),)),
)

MAX_CLASSES = len(SHAPE_CLASSES)


def class_names(num_classes: int) -> list[str]:
    """Names of the first ``num_classes`` synthetic classes."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"the synthetic dataset has 1 to {MAX_CLASSES} classes, got {num_classes}")
    return [shape.name for shape in SHAPE_CLASSES[:num_classes]]


SHAPE_INDEX = {shape.name: index for index, shape in enumerate(SHAPE_CLASSES)}


def place(vertices: np.ndarray, *, center: tuple[float, float], size: float, aspect: float, angle: float) -> np.ndarray:
    """Map object-frame vertices [N, 2] to image coordinates [N, 2].

    The object frame is stretched by ``aspect`` (x by sqrt(aspect), y by 1/sqrt(aspect)),
    scaled so that the frame's half-extent is ``size / 2`` pixels, rotated by ``angle``
    radians and moved to ``center``.
    """
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * (size / 2)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return (vertices * stretch) @ rotation.T + np.asarray(center)
