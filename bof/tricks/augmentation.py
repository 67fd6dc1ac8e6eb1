"""Training-time data augmentation (§3.3): the full single-stage pipeline, and the two-stage one.

Single-stage detectors (YOLOv3, SSD), in this order: photometric distortion, random
expansion (p = 0.5, ratio 1-4, dataset-mean fill), SSD constrained crop, resize to the
training shape with a randomly chosen interpolation, horizontal flip (p = 0.5). Turning
every step off ("- data augmentation" in Table 2) leaves a plain resize.

Two-stage detectors (Faster R-CNN) sample and crop RoIs on the feature map, which stands
in for geometric augmentation, so they get only the resize (shorter side 600, longer at
most 1000 at VOC scale) and the flip.

Every per-box tensor of the target (``labels``, ``difficult``, mixup ``weights``) follows
its box when a crop drops boxes. All random draws come from the ``generator`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from bof.tricks.photometric import make_photometric_params, photometric_distort
from bof.tricks.random import bernoulli, randint
from bof.tricks.ssd_crop import Expansion, Window, crop_boxes, expand_crop_resize, make_expand_params, sample_crop

Target = dict[str, object]
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
# OpenCV's five choices (nearest, linear, area, cubic, lanczos), as the reference draws
# among them; the antialiased modes stand in for area and lanczos.
INTERPOLATIONS: tuple[tuple[InterpolationMode, bool], ...] = (
    (InterpolationMode.NEAREST, False),
    (InterpolationMode.BILINEAR, False),
    (InterpolationMode.BILINEAR, True),
    (InterpolationMode.BICUBIC, False),
    (InterpolationMode.BICUBIC, True),
)
PER_BOX_KEYS = ("labels", "difficult", "weights")


def keep_boxes(target: Target, boxes_xyxy: torch.Tensor, keep: torch.Tensor, canvas_size: tuple[int, int]) -> Target:
    """A target whose boxes are ``boxes_xyxy`` and whose per-box tensors are filtered by ``keep``."""
    out = dict(target)
    out["boxes"] = tv_tensors.BoundingBoxes(boxes_xyxy, format="XYXY", canvas_size=canvas_size)
    for key in PER_BOX_KEYS:
        if key in target:
            out[key] = target[key][keep]
    return out


def hflip(image: torch.Tensor, target: Target):
    return F.horizontal_flip(image), {**target, "boxes": F.horizontal_flip(target["boxes"])}


@dataclass(frozen=True)
class SingleStageAugment:
    """The single-stage pipeline; each step can be switched off. Call with the batch's
    input ``size`` (random shapes) and the sample's ``generator``."""

    photometric: bool = True
    expand: bool = True
    crop: bool = True
    flip: bool = True
    random_interpolation: bool = True
    fill: tuple[float, float, float] = IMAGENET_MEAN_255
    max_expand_ratio: float = 4.0

    @classmethod
    def off(cls) -> SingleStageAugment:
        """ "- data augmentation": resize only."""
        return cls(photometric=False, expand=False, crop=False, flip=False, random_interpolation=False)

    def __call__(self, image: torch.Tensor, target: Target, *, size: int, generator: torch.Generator):
        if self.photometric:
            image = photometric_distort(image, make_photometric_params(generator))
        height, width = image.shape[-2:]
        expansion = Expansion(0, 0, width, height)
        if self.expand:
            expansion = make_expand_params(generator, width, height, max_ratio=self.max_expand_ratio)
        boxes = target["boxes"].as_subclass(torch.Tensor) + torch.tensor(
            [expansion.left, expansion.top] * 2, dtype=torch.float32
        )
        canvas = (expansion.canvas_width, expansion.canvas_height)
        window = sample_crop(generator, boxes, *canvas) if self.crop else Window(0, 0, *canvas)
        boxes, keep = crop_boxes(boxes, window)
        mode, antialias = (InterpolationMode.BILINEAR, True)
        if self.random_interpolation:
            mode, antialias = INTERPOLATIONS[randint(generator, 0, len(INTERPOLATIONS) - 1)]
        image = expand_crop_resize(
            image, expansion, window, (size, size), self.fill, interpolation=mode, antialias=antialias
        )
        boxes = boxes * torch.tensor([size / window.width, size / window.height] * 2)
        target = keep_boxes(target, boxes, keep, (size, size))
        if self.flip and bernoulli(generator, 0.5):
            image, target = hflip(image, target)
        return tv_tensors.Image(image), target


@dataclass(frozen=True)
class TwoStageAugment:
    """Faster R-CNN's pipeline: shorter side to ``min_size`` (longer at most ``max_size``), flip."""

    min_size: int = 600
    max_size: int = 1000
    flip: bool = True

    def __call__(self, image: torch.Tensor, target: Target, *, size: int | None = None, generator: torch.Generator):
        image = F.resize(image, [self.min_size], max_size=self.max_size, antialias=True)
        target = {**target, "boxes": F.resize(target["boxes"], [self.min_size], max_size=self.max_size)}
        if self.flip and bernoulli(generator, 0.5):
            image, target = hflip(image, target)
        return tv_tensors.Image(image), target
