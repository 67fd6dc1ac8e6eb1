"""Training-time data augmentation (§3.3): the full single-stage pipeline, and the two-stage one.

Single-stage detectors (YOLOv3, SSD), in this order: photometric distortion, random
expansion (p = 0.5, ratio 1-4, dataset-mean fill), SSD constrained crop, resize to the
training shape with a randomly chosen interpolation, horizontal flip (p = 0.5). Turning
every step off ("- data augmentation" in Table 2) leaves a plain resize.

Two-stage detectors (Faster R-CNN) sample and crop RoIs on the feature map, which stands
in for geometric augmentation, so they get only the resize (shorter side 600, longer at
most 1000 at VOC scale) and the flip.

Every per-box tensor of the target (``labels``, ``difficult``, mixup ``weights``) follows
its box when a crop drops boxes. All random draws come from the ``generator`` argument, or
from torch's global stream without one (`DetectionTransform`).
"""

from __future__ import annotations

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from bof.tricks.photometric import make_photometric_params, photometric_distort
from bof.tricks.random import bernoulli, randint, seed_from
from bof.tricks.ssd_crop import Expansion, Window, crop_boxes, expand_crop_resize, make_expand_params, sample_crop
from bof.tricks.target import Target

__all__ = ["DetectionTransform", "SingleStageAugment", "TwoStageAugment"]
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
PER_BOX_KEYS = ("labels", "difficult", "weights", "iscrowd")


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


class DetectionTransform(v2.Transform):
    """A §3.3 pipeline as a transforms-v2 transform: ``(image, target)`` in, the same types out.

    The image may be a ``tv_tensors.Image`` or tensor on the CPU (uint8, or float in [0, 1]: quantised
    to 8 bits for the augmentation, which works on 8-bit pixels as the reference does, and returned in
    its float dtype; either comes back as a ``tv_tensors.Image``) or an RGB PIL image (returned as PIL).
    ``target["boxes"]`` is a ``tv_tensors.BoundingBoxes`` of any axis-aligned format over the image
    (returned, as float, in its format with the new ``canvas_size``); its per-box tensors (``labels``,
    ``difficult``, ``weights``, ``iscrowd``) follow their boxes. Any other tensor (a mask, an area)
    and any other input are refused in one line. Random draws come from ``generator`` when given (bof's
    training: one per sample, so any worker draws the same), else from torch's global stream
    (as torchvision's transforms), so ``v2.Compose([...])`` and ``torch.manual_seed`` work."""

    def forward(self, *inputs, size: int | None = None, generator: torch.Generator | None = None):
        image, target = _image_and_target(inputs, type(self).__name__)
        pixels, restore = uint8_pixels(image, type(self).__name__)
        boxes = target["boxes"]
        if tuple(boxes.canvas_size) != tuple(pixels.shape[-2:]):
            raise ValueError(
                f"{type(self).__name__}: the boxes' canvas_size {tuple(boxes.canvas_size)} is not the image's "
                f"size {tuple(pixels.shape[-2:])}"
            )
        xyxy = xyxy_boxes(boxes.to(torch.float32))
        if generator is None:  # torch's global stream, as torchvision's transforms draw
            generator = torch.Generator().manual_seed(seed_from())
        pixels, target = self.augment(pixels, {**target, "boxes": xyxy}, size=size, generator=generator)
        boxes = F.convert_bounding_box_format(target["boxes"], new_format=boxes.format)
        return restore(pixels), {**target, "boxes": boxes}

    def augment(self, image: torch.Tensor, target: Target, *, size: int | None, generator: torch.Generator):
        """The pipeline on a uint8 [3, H, W] image and XYXY boxes."""
        raise NotImplementedError


def _image_and_target(inputs: tuple, name: str) -> tuple[object, Target]:
    if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
        inputs = tuple(inputs[0])  # one (image, target) pair, as v2 transforms also accept
    if len(inputs) != 2 or not isinstance(inputs[1], dict):
        raise TypeError(f"{name} takes (image, target) with target a dict, got {len(inputs)} input(s)")
    image, target = inputs
    if not isinstance(target.get("boxes"), tv_tensors.BoundingBoxes):
        raise TypeError(
            f"{name}: target['boxes'] must be a tv_tensors.BoundingBoxes (its format and canvas_size say what "
            f"the numbers mean), got {type(target.get('boxes')).__name__}"
        )
    for key, value in target.items():  # a mask or an area would no longer match the image: refuse it
        if isinstance(value, torch.Tensor) and value.ndim > 0 and key not in ("boxes", *PER_BOX_KEYS):
            raise TypeError(
                f"{name}: target[{key!r}] is a tensor this transform would not move with the image (it moves "
                f"boxes and their {', '.join(PER_BOX_KEYS)}): drop it, or recompute it after the transform"
            )
    return image, target


def xyxy_boxes(boxes: tv_tensors.BoundingBoxes) -> tv_tensors.BoundingBoxes:
    return F.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)


def uint8_pixels(image, name: str):
    """The image as a uint8 [3, H, W] tensor, and the function that returns a result to the input's
    type; ``name`` (the caller) begins the one-line error of an image it cannot take."""
    if isinstance(image, PIL.Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"{name}: a PIL image must be RGB, got mode {image.mode}")
        return F.pil_to_tensor(image), lambda pixels: F.to_pil_image(pixels)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise TypeError(f"{name}: the image must be a [3, H, W] tensor, tv_tensors.Image or RGB PIL image, got {shape}")
    if image.device.type != "cpu":
        raise ValueError(f"{name}: the image is on {image.device}; the augmentation runs on CPU (in the data loader)")
    pixels = image.as_subclass(torch.Tensor)
    if pixels.dtype == torch.uint8:
        return pixels, tv_tensors.Image
    if not pixels.is_floating_point():
        raise TypeError(f"{name}: the image must be uint8 or float in [0, 1], got {pixels.dtype}")
    if pixels.numel() and not (torch.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
        raise ValueError(
            f"{name}: a float image must hold finite values in [0, 1], got "
            f"{pixels.min().item():.4g}..{pixels.max().item():.4g}"
        )
    dtype = pixels.dtype  # via float32: in float16 255.999 rounds to 256 and 1.0 would wrap to 0
    return F.to_dtype(pixels.float(), torch.uint8, scale=True), lambda out: tv_tensors.Image(
        F.to_dtype(out, torch.float32, scale=True).to(dtype)
    )


class SingleStageAugment(DetectionTransform):
    """The single-stage pipeline (square output of side ``size``); each step can be switched off.
    A call's ``size`` (the batch's random shape) replaces the default."""

    def __init__(
        self,
        size: int = 416,
        *,
        photometric: bool = True,
        expand: bool = True,
        crop: bool = True,
        flip: bool = True,
        random_interpolation: bool = True,
        fill: tuple[float, float, float] = IMAGENET_MEAN_255,
        max_expand_ratio: float = 4.0,
    ):
        super().__init__()
        if size < 1 or max_expand_ratio < 1:
            raise ValueError(f"size must be >= 1 and max_expand_ratio >= 1, got {size} and {max_expand_ratio}")
        self.size = size
        self.photometric, self.expand, self.crop, self.flip = photometric, expand, crop, flip
        self.random_interpolation = random_interpolation
        self.fill = tuple(fill)
        self.max_expand_ratio = max_expand_ratio

    @classmethod
    def off(cls, size: int = 416) -> SingleStageAugment:
        """ "- data augmentation": resize only."""
        return cls(size, photometric=False, expand=False, crop=False, flip=False, random_interpolation=False)

    def augment(self, image: torch.Tensor, target: Target, *, size: int | None, generator: torch.Generator):
        size = size or self.size
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


class TwoStageAugment(DetectionTransform):
    """Faster R-CNN's pipeline: shorter side to ``min_size`` (longer at most ``max_size``), flip."""

    def __init__(self, min_size: int = 600, max_size: int = 1000, *, flip: bool = True):
        super().__init__()
        self.min_size, self.max_size, self.flip = min_size, max_size, flip

    def augment(self, image: torch.Tensor, target: Target, *, size: int | None, generator: torch.Generator):
        image = F.resize(image, [self.min_size], max_size=self.max_size, antialias=True)
        target = {**target, "boxes": F.resize(target["boxes"], [self.min_size], max_size=self.max_size)}
        if self.flip and bernoulli(generator, 0.5):
            image, target = hflip(image, target)
        return tv_tensors.Image(image), target
