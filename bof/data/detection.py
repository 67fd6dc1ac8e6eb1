"""The dataset both loaders (VOC devkit, COCO JSON) return: samples parsed once, images read lazily.

Boxes are held in the continuous pixel-edge frame: a box covering pixel columns
``x_first..x_last`` (0-based) is ``[x_first, x_last + 1)``. VOC's 1-based inclusive
``xmin..xmax`` is therefore ``[xmin - 1, xmax)`` and COCO's ``[x, y, w, h]`` is
``[x, x + w)``, so both formats round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bof.data.images import load_image, read_image_size
from bof.data.policy import CheckImages, SkipLog
from bof.errors import DatasetError
from bof.tricks.target import Target

__all__ = ["DetectionDataset", "Sample", "collate_detection"]

if TYPE_CHECKING:
    from torchvision import tv_tensors

Transforms = Callable[["tv_tensors.Image", Target], tuple["tv_tensors.Image", Target]]


@dataclass(frozen=True)
class Sample:
    """One image and its parsed annotation (numpy, so data-loader workers share it cheaply)."""

    image_id: str | int
    image_path: Path
    width: int
    height: int
    boxes_xyxy: np.ndarray  # [N, 4] float32, pixel-edge frame
    labels: np.ndarray  # [N] int64, index into the dataset's classes
    difficult: np.ndarray  # [N] bool
    annotation_path: Path


def check_sample_images(samples: list[Sample], check_images: CheckImages, skip_log: SkipLog) -> list[Sample]:
    """Drop (skip) or reject (strict) samples whose image is missing, unreadable,
    truncated or of a different size than the annotation says."""
    if check_images == "none":
        return samples
    kept = []
    for sample in samples:
        try:
            if check_images == "decode":
                height, width = load_image(sample.image_path).shape[-2:]
            else:
                width, height = read_image_size(sample.image_path)
            if (width, height) != (sample.width, sample.height):
                raise DatasetError(
                    sample.image_path,
                    f"image is {width}x{height} but {sample.annotation_path} says {sample.width}x{sample.height}",
                )
        except DatasetError as error:
            skip_log.record(error)
            continue
        kept.append(sample)
    return kept


def make_target(sample: Sample) -> Target:
    """The target dict every model and transform in ``bof`` consumes."""
    import torch
    from torchvision import tv_tensors

    return {
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(sample.boxes_xyxy.reshape(-1, 4)),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(sample.height, sample.width),
        ),
        "labels": torch.from_numpy(sample.labels),
        "difficult": torch.from_numpy(sample.difficult),
        "image_id": sample.image_id,
    }


class DetectionDataset:
    """Indexable (image, target) pairs; ``image`` is a uint8 ``tv_tensors.Image`` [3, H, W].

    A plain map-style dataset (``__len__`` and ``__getitem__``), which ``DataLoader`` takes
    as it is; not subclassing ``torch.utils.data.Dataset`` keeps parsing and evaluation
    free of the torch import.

    ``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes``, XYXY, canvas size set),
    ``labels`` (int64 [N], 0-based class index), ``difficult`` (bool [N]) and ``image_id``.
    ``skipped`` lists the samples a ``skip`` policy dropped while loading.
    """

    def __init__(
        self, samples: list[Sample], classes: Sequence[str], *, transforms: Transforms | None, skip_log: SkipLog
    ):
        self.samples = samples
        self.classes = list(classes)
        self.transforms = transforms
        self.skipped = skip_log.skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, Target]:
        sample = self.samples[index]
        image = load_image(sample.image_path)
        if tuple(image.shape[-2:]) != (sample.height, sample.width):
            raise DatasetError(
                sample.image_path,
                f"image is {image.shape[-1]}x{image.shape[-2]} but {sample.annotation_path} "
                f"says {sample.width}x{sample.height}",
            )
        target = make_target(sample)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate_detection(batch: Sequence[tuple[tv_tensors.Image, Target]]) -> tuple[tuple, tuple]:
    """Images differ in size, so a batch is a tuple of images and a tuple of targets."""
    return tuple(zip(*batch, strict=True))  # type: ignore[return-value]
