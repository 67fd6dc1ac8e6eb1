"""Photometric distortion for single-stage detectors (§3.3, "random color jittering").

The semantics are those of the authors' GluonCV ``random_color_distort``
(``gluoncv/data/transforms/experimental/image.py``), the code the paper's numbers come from:

* brightness: ``x + U(-32, 32)`` (of 255);
* then either contrast, saturation, hue or saturation, hue, contrast, each with p = 0.5:
* contrast: ``x * a``, ``a ~ U(0.5, 1.5)``: a plain scale (``src *= alpha``), no blend toward a mean;
* saturation: ``x a + (1 - a) luma(x)``, ``a ~ U(0.5, 1.5)``, luma with weights (0.299, 0.587, 0.114);
* hue: a rotation of the chroma plane of YIQ by ``d * pi`` radians, ``d ~ U(-18, 18)``,
  back to RGB with GluonCV's rounded inverse matrix. GluonCV's ``hue_delta=18`` reads as
  degrees but multiplies them by pi as if they were fractions of a half turn, so the hue is
  in effect rotated uniformly at random; we keep what ran (``hue_scale=math.pi``), and
  ``hue_scale=math.pi / 180`` gives the ±18 degrees the argument's name suggests;
* no clipping between the steps. GluonCV keeps the result in float32 until normalisation;
  ``bof`` keeps images uint8 between steps of the pipeline, so the result is rounded and
  clipped to 0..255 once, at the end (a documented deviation).

Why a kernel of our own: torchvision's ``RandomPhotometricDistort`` has multiplicative
brightness, an HSV hue shift, a channel shuffle and clips after every op, which are
different semantics. Because each step above is an affine map of the RGB vector, the whole
distortion composes into one 3x3 matrix and one offset, applied in a single pass by OpenCV's
``cv2.transform`` (GluonCV's own image operators are OpenCV's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from bof.tricks.random import bernoulli, uniform

LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
# GluonCV's ``tyiq`` and ``ityiq`` (the latter a rounded inverse of the former)
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]], dtype=torch.float64)
YIQ_TO_RGB = torch.tensor([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]], dtype=torch.float64)


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of the distortion; ``None`` marks a step that was not applied."""

    brightness: float | None = None  # additive, in 0..255 units
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None  # GluonCV's hue draw d; the rotation is d * hue_scale radians
    contrast_first: bool = True
    hue_scale: float = math.pi


def make_photometric_params(
    generator: torch.Generator,
    *,
    brightness_delta: float = 32.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: float = 18.0,
    hue_scale: float = math.pi,
    p: float = 0.5,
) -> PhotometricParams:
    def maybe(low: float, high: float) -> float | None:
        applied = bernoulli(generator, p)
        value = uniform(generator, low, high)
        return value if applied else None

    return PhotometricParams(
        brightness=maybe(-brightness_delta, brightness_delta),
        contrast=maybe(*contrast_range),
        saturation=maybe(*saturation_range),
        hue=maybe(-hue_delta, hue_delta),
        contrast_first=bernoulli(generator, 0.5),
        hue_scale=hue_scale,
    )


def color_transform(params: PhotometricParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The distortion as ``x -> matrix @ x + offset`` on RGB vectors (float64 [3, 3], [3])."""
    matrix = torch.eye(3, dtype=torch.float64)
    offset = torch.zeros(3, dtype=torch.float64)

    def then(step_matrix: torch.Tensor, step_offset: torch.Tensor | None = None) -> None:
        nonlocal matrix, offset
        matrix, offset = step_matrix @ matrix, step_matrix @ offset
        if step_offset is not None:
            offset = offset + step_offset

    def contrast() -> None:
        if params.contrast is not None:
            then(params.contrast * torch.eye(3, dtype=torch.float64))

    def saturation() -> None:
        if params.saturation is not None:
            a = params.saturation
            then(a * torch.eye(3, dtype=torch.float64) + (1 - a) * torch.ones(3, 1, dtype=torch.float64) @ LUMA[None])

    def hue() -> None:
        if params.hue is not None:
            angle = params.hue * params.hue_scale
            rotation = torch.tensor(
                [[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]],
                dtype=torch.float64,
            )
            then(YIQ_TO_RGB @ rotation @ RGB_TO_YIQ)

    if params.brightness is not None:
        then(torch.eye(3, dtype=torch.float64), torch.full((3,), params.brightness, dtype=torch.float64))
    steps = (contrast, saturation, hue) if params.contrast_first else (saturation, hue, contrast)
    for step in steps:
        step()
    return matrix, offset


def apply_color_transform(image: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``clip(round(matrix @ pixel + offset))`` for a uint8 image [3, H, W], by OpenCV's
    ``cv2.transform`` on the pixels' HWC view (no copy for a channels-last image, as decoded).

    OpenCV's uint8 kernel is fixed-point: a pixel can land one level from the exactly rounded
    value (tests/tricks/test_augmentation.py holds it to that); it is ~10x faster than the
    float matrix product in torch. The result is channels-last.
    """
    pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    affine = torch.cat([matrix, offset[:, None]], dim=1).numpy().astype(np.float32)
    return torch.from_numpy(cv2.transform(pixels, affine)).permute(2, 0, 1)


def photometric_distort(image: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
    """Apply one draw to a uint8 image [3, H, W]."""
    if params.brightness is None and params.contrast is None and params.saturation is None and params.hue is None:
        return image
    return apply_color_transform(image, *color_transform(params))
