"""Random expansion and SSD-style constrained random crop (§3.3, "random geometry transformation").

Expansion (zoom out): with p = 0.5 the image is placed at a random position on a canvas
``ratio`` times larger (``ratio ~ U(1, 4)``) filled with the dataset mean. This is what
``torchvision.transforms.v2.RandomZoomOut`` draws; we draw it from an explicit generator.

Constrained crop, with the semantics of the authors' GluonCV ``random_crop_with_constraints``:
for each constraint ``(min_iou, max_iou)`` in ``{0.1, 0.3, 0.5, 0.7, 0.9}`` and "none",
up to 50 trials draw ``scale ~ U(0.3, 1)`` and an aspect ratio within ``[1/2, 2]`` (and
within what keeps the crop inside the image) until *every* box's IoU with the crop lies
in the range; one of the successful crops, or the whole image, is then picked at random;
boxes whose centre falls outside the crop are dropped. torchvision's ``RandomIoUCrop``
differs (per-side scales, "any box" IoU, 40 trials, global RNG), hence this kernel.

Expansion, crop and the resize to the training shape are applied together
(``expand_crop_resize``): the up-to-16x larger canvas is never built, only the image's
part of the crop is resized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from bof.tricks.random import bernoulli, randint, uniform

CONSTRAINTS: tuple[tuple[float | None, float | None], ...] = (
    (0.1, None),
    (0.3, None),
    (0.5, None),
    (0.7, None),
    (0.9, None),
    (None, 1.0),
)


@dataclass(frozen=True)
class Window:
    """An axis-aligned integer rectangle: left, top, width, height."""

    left: int
    top: int
    width: int
    height: int

    def xyxy(self) -> torch.Tensor:
        return torch.tensor(
            [[self.left, self.top, self.left + self.width, self.top + self.height]], dtype=torch.float32
        )


@dataclass(frozen=True)
class Expansion:
    """The image's top-left corner on an expanded canvas of ``canvas_width x canvas_height``."""

    left: int
    top: int
    canvas_width: int
    canvas_height: int


def make_expand_params(
    generator: torch.Generator, width: int, height: int, *, max_ratio: float = 4.0, p: float = 0.5
) -> Expansion:
    applied = bernoulli(generator, p)
    ratio = uniform(generator, 1.0, max_ratio)
    if not applied or max_ratio <= 1:
        return Expansion(0, 0, width, height)
    canvas_w, canvas_h = int(width * ratio), int(height * ratio)
    return Expansion(
        randint(generator, 0, canvas_w - width), randint(generator, 0, canvas_h - height), canvas_w, canvas_h
    )


def sample_crop(
    generator: torch.Generator,
    boxes_xyxy: torch.Tensor,
    width: int,
    height: int,
    *,
    constraints: Sequence[tuple[float | None, float | None]] = CONSTRAINTS,
    min_scale: float = 0.3,
    max_aspect_ratio: float = 2.0,
    max_trials: int = 50,
) -> Window:
    """Draw a crop of a ``width x height`` image whose boxes are ``boxes_xyxy`` [N, 4].

    Returns the whole image when no candidate keeps a box centre inside. All trials are
    drawn at once and, per constraint, the first that satisfies it is taken: the same
    distribution as trying them one after another.
    """
    boxes = boxes_xyxy.double().numpy()
    low = np.array([-math.inf if c[0] is None else c[0] for c in constraints])[:, None]  # [C, 1]
    high = np.array([math.inf if c[1] is None else c[1] for c in constraints])[:, None]
    draws = torch.rand((len(constraints), max_trials, 4), generator=generator, dtype=torch.float64).numpy()
    scale = min_scale + (1.0 - min_scale) * draws[..., 0]  # [C, trials]
    aspect_low = np.maximum(1 / max_aspect_ratio, scale * scale)
    aspect = aspect_low + (np.minimum(max_aspect_ratio, 1 / (scale * scale)) - aspect_low) * draws[..., 1]
    crop_h = np.maximum(1, (height * scale / np.sqrt(aspect)).astype(np.int64))
    crop_w = np.maximum(1, (width * scale * np.sqrt(aspect)).astype(np.int64))
    left = np.minimum((draws[..., 2] * (width - crop_w + 1)).astype(np.int64), width - crop_w)
    top = np.minimum((draws[..., 3] * (height - crop_h + 1)).astype(np.int64), height - crop_h)
    if len(boxes):
        windows = np.stack([left, top, left + crop_w, top + crop_h], axis=-1).reshape(-1, 4)
        iou = _iou(boxes, windows).reshape(len(boxes), *left.shape)  # [N, C, trials]
        satisfied = (iou.min(axis=0) >= low) & (iou.max(axis=0) <= high)
    else:
        satisfied = np.ones(left.shape, dtype=bool)
    candidates = [Window(0, 0, width, height)]
    for c in np.nonzero(satisfied.any(axis=1))[0]:
        k = int(np.argmax(satisfied[c]))  # the first trial that satisfies constraint c
        candidates.append(Window(int(left[c, k]), int(top[c, k]), int(crop_w[c, k]), int(crop_h[c, k])))
    while candidates:
        window = candidates.pop(randint(generator, 0, len(candidates) - 1))
        if len(boxes_xyxy) == 0 or centres_inside(boxes_xyxy, window).any():
            return window
    return Window(0, 0, width, height)


def _iou(boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Pixel-edge IoU [N, M] of boxes [N, 4] and windows [M, 4]."""
    top_left = np.maximum(boxes[:, None, :2], windows[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], windows[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_boxes = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)
    area_windows = (windows[:, 2:] - windows[:, :2]).prod(axis=1)
    return inter / (area_boxes[:, None] + area_windows[None, :] - inter)


def centres_inside(boxes_xyxy: torch.Tensor, window: Window) -> torch.Tensor:
    """[N] bool: box centre in ``[left, left + width) x [top, top + height)``."""
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
    return (
        (window.left <= cx) & (cx < window.left + window.width) & (window.top <= cy) & (cy < window.top + window.height)
    )


def crop_boxes(boxes_xyxy: torch.Tensor, window: Window) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes [N, 4] in the crop's frame, clipped to it, and the [N] mask of those kept:
    centre inside the crop and non-empty after clipping."""
    keep = centres_inside(boxes_xyxy, window)
    shifted = boxes_xyxy - torch.tensor([window.left, window.top, window.left, window.top], dtype=boxes_xyxy.dtype)
    shifted[:, 0::2] = shifted[:, 0::2].clamp(0, window.width)
    shifted[:, 1::2] = shifted[:, 1::2].clamp(0, window.height)
    keep &= (shifted[:, 2] > shifted[:, 0]) & (shifted[:, 3] > shifted[:, 1])
    return shifted[keep], keep


def expand_crop_resize(
    image: torch.Tensor,
    placement: Expansion,
    crop: Window,
    size: tuple[int, int],
    fill: Sequence[float],
    *,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """``resize(crop of the expanded canvas, size)`` for a uint8 image [3, H, W] -> [3, *size].

    The expanded canvas is never built: the output is ``fill`` except where the image
    shows, and only the image's overlap with the crop is resized, into its rectangle in
    output pixels. When the crop lies inside the image this is exactly ``F.resize`` of
    the crop; otherwise the image's edges land on the nearest output pixel (within half
    a pixel of the exact position) and are not blended with the fill. Boxes are moved by
    the exact geometry, not by this rounding.
    """
    height, width = image.shape[-2:]
    out_h, out_w = size
    x0, y0 = max(crop.left, placement.left), max(crop.top, placement.top)
    x1, y1 = min(crop.left + crop.width, placement.left + width), min(crop.top + crop.height, placement.top + height)
    part = image[:, y0 - placement.top : y1 - placement.top, x0 - placement.left : x1 - placement.left]
    if (x0, y0, x1, y1) == (crop.left, crop.top, crop.left + crop.width, crop.top + crop.height):
        return resize(part, (out_h, out_w), interpolation=interpolation, antialias=antialias)
    out = torch.empty((out_h, out_w, 3), dtype=image.dtype).permute(2, 0, 1)  # channels-last
    out[:] = torch.tensor(fill, dtype=torch.float32).round().to(image.dtype)[:, None, None]
    scale_x, scale_y = out_w / crop.width, out_h / crop.height
    left, right = round((x0 - crop.left) * scale_x), round((x1 - crop.left) * scale_x)
    top, bottom = round((y0 - crop.top) * scale_y), round((y1 - crop.top) * scale_y)
    if x1 > x0 and y1 > y0 and right > left and bottom > top:
        out[:, top:bottom, left:right] = resize(
            part, (bottom - top, right - left), interpolation=interpolation, antialias=antialias
        )
    return out


def _nearest_index(size_in: int, size_out: int) -> torch.Tensor:
    """torch's "nearest" source index, ``floor(i * (in / out))`` in float32, as its kernel computes it."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    return (torch.arange(size_out, dtype=torch.float32) * scale).floor_().long().clamp_(max=size_in - 1)


def resize(
    image: torch.Tensor,
    size: tuple[int, int],
    *,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """``F.resize`` of a uint8 image [3, H, W] to ``size``, computed in channels-last memory.

    The same pixels as ``F.resize`` on any layout (tested); only the speed differs: torch's
    uint8 bilinear and bicubic kernels run about twice as fast on channels-last input, which is
    what the JPEG decoder produces, while its nearest kernel is slower there, so nearest is an
    index gather of rows and columns instead. The result is channels-last.
    """
    height, width = size
    if interpolation == InterpolationMode.NEAREST:  # a gather: any layout in, channels-last out
        rows = image.permute(1, 2, 0).index_select(0, _nearest_index(image.shape[1], height))
        return rows.index_select(1, _nearest_index(image.shape[2], width)).permute(2, 0, 1)
    if image.stride(0) != 1:
        image = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    return F.resize(image, [height, width], interpolation=interpolation, antialias=antialias)
