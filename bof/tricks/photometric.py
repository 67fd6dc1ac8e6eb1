"""Photometric distortion for single-stage detectors (§3.3, "random color jittering").

The semantics are those of the authors' GluonCV ``random_color_distort``: additive
brightness ``U(-32, 32)`` (of 255), then either contrast-saturation-hue or
saturation-hue-contrast, each applied with p = 0.5; contrast ``x a + (1 - a) mean_luma``,
saturation ``x a + (1 - a) luma(x)`` with ``a ~ U(0.5, 1.5)``; hue a rotation of the
chroma plane of YIQ by ``U(-18, 18)`` degrees; no clipping between the steps.

Why a kernel of our own: torchvision's ``RandomPhotometricDistort`` has multiplicative
brightness, an HSV hue shift, a channel shuffle and clips after every op, which are
different semantics. And because each step above is an affine map of the RGB vector
(contrast's offset depends only on the image mean, itself an affine image of the
original mean), the whole distortion composes into one 3x3 matrix and one offset,
applied to the image in a single pass.

(GluonCV multiplies the hue angle in degrees by pi, which turns "18 degrees" into an
almost uniform rotation; we rotate by the stated 18 degrees.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bof.tricks.random import bernoulli, uniform

LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]], dtype=torch.float64)
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of the distortion; ``None`` marks a step that was not applied."""

    brightness: float | None = None  # additive, in 0..255 units
    contrast: float | None = None
    saturation: float | None = None
    hue_degrees: float | None = None
    contrast_first: bool = True


def make_photometric_params(
    generator: torch.Generator,
    *,
    brightness_delta: float = 32.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta_degrees: float = 18.0,
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
        hue_degrees=maybe(-hue_delta_degrees, hue_delta_degrees),
        contrast_first=bernoulli(generator, 0.5),
    )


def color_transform(params: PhotometricParams, channel_means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distortion as ``x -> matrix @ x + offset`` on RGB vectors (float64 [3, 3], [3]).

    ``channel_means`` [3] is the mean RGB of the input image, needed by contrast.
    """
    matrix = torch.eye(3, dtype=torch.float64)
    offset = torch.zeros(3, dtype=torch.float64)
    means = channel_means.to(torch.float64)

    def then(step_matrix: torch.Tensor, step_offset: torch.Tensor) -> None:
        nonlocal matrix, offset
        matrix, offset = step_matrix @ matrix, step_matrix @ offset + step_offset

    def contrast() -> None:
        if params.contrast is not None:
            mean_luma = LUMA @ (matrix @ means + offset)
            then(
                params.contrast * torch.eye(3, dtype=torch.float64),
                (1 - params.contrast) * mean_luma * torch.ones(3, dtype=torch.float64),
            )

    def saturation() -> None:
        if params.saturation is not None:
            a = params.saturation
            then(
                a * torch.eye(3, dtype=torch.float64) + (1 - a) * torch.ones(3, 1, dtype=torch.float64) @ LUMA[None],
                torch.zeros(3, dtype=torch.float64),
            )

    def hue() -> None:
        if params.hue_degrees is not None:
            angle = math.radians(params.hue_degrees)
            rotation = torch.tensor(
                [[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]],
                dtype=torch.float64,
            )
            then(YIQ_TO_RGB @ rotation @ RGB_TO_YIQ, torch.zeros(3, dtype=torch.float64))

    if params.brightness is not None:
        then(torch.eye(3, dtype=torch.float64), torch.full((3,), params.brightness, dtype=torch.float64))
    steps = (contrast, saturation, hue) if params.contrast_first else (saturation, hue, contrast)
    for step in steps:
        step()
    return matrix, offset


def apply_color_transform(image: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``clip(round(matrix @ pixel + offset))`` for a uint8 image [3, H, W] (halves round up)."""
    height, width = image.shape[-2:]
    pixels = image.reshape(3, -1).float()
    out = torch.addmm((offset + 0.5).float()[:, None], matrix.float(), pixels)
    return out.clamp_(0, 255).to(torch.uint8).reshape(3, height, width)  # truncation of x + 0.5


def photometric_distort(image: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
    """Apply one draw to a uint8 image [3, H, W]."""
    if (
        params.brightness is None
        and params.contrast is None
        and params.saturation is None
        and params.hue_degrees is None
    ):
        return image
    means = image.float().mean(dim=(1, 2)) if params.contrast is not None else torch.zeros(3)
    return apply_color_transform(image, *color_transform(params, means))
