"""The training view of a detection dataset: mixup, then augmentation, keyed by (epoch, index, size).

Every random draw of a sample (mixup ratio, mixup partner, augmentation parameters) comes
from one generator seeded by (seed, epoch, index), inside ``__getitem__``, that is inside
the data-loader worker. The reference implementation switched mixup on from the parent
process after the worker pool existed, so with workers it silently never mixed; here
the key itself says which epoch it is, so a persistent worker cannot hold a stale switch.
The batch sampler puts the batch's input size (random shapes) into the key as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torchvision import tv_tensors

from bof.data.detection import DetectionDataset, Target
from bof.tricks.mixup import DetectionMixup, mix_detection
from bof.tricks.random import generator_for

Augment = Callable[..., tuple[tv_tensors.Image, Target]]  # (image, target, *, size, generator)


class SampleKey(NamedTuple):
    epoch: int
    index: int
    size: int | None = None  # the batch's input size; None lets the transform decide


class TrainingSet(torch.utils.data.Dataset):
    """``dataset[key]`` -> (image, target) with ``target["weights"]`` (mixup box weights, 1 when
    unmixed) and ``target["loss_weight"]`` (how much the image's loss counts: mixup's
    ``loss_scale`` in the epochs it mixes, GluonCV's Faster R-CNN ``mix_ratio``; 1 otherwise)."""

    def __init__(
        self, dataset: DetectionDataset, augment: Augment, *, mixup: DetectionMixup | None, epochs: int, seed: int
    ):
        self.dataset = dataset
        self.augment = augment
        self.mixup = mixup
        self.epochs = epochs
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> tuple[tv_tensors.Image, Target]:
        generator = generator_for(self.seed, key.epoch, key.index)
        image, target = self.dataset[key.index]
        target["weights"] = torch.ones(len(target["labels"]))
        target["loss_weight"] = 1.0
        if self.mixup is not None and self.mixup.active(key.epoch, self.epochs):
            target["loss_weight"] = self.mixup.loss_scale
            draw = self.mixup.draw(generator, key.index, len(self.dataset))
            if draw is not None:
                image, target = self._mix(image, target, *draw)
        return self.augment(image, target, size=key.size, generator=generator)

    def _mix(self, image, target: Target, lam: float, partner: int) -> tuple[tv_tensors.Image, Target]:
        image_b, target_b = self.dataset[partner]
        mixed, boxes, labels, weights = mix_detection(
            image, target["boxes"], target["labels"], image_b, target_b["boxes"], target_b["labels"], lam
        )
        if not self.mixup.weighted:
            weights = torch.ones_like(weights)
        return tv_tensors.Image(mixed), {
            **target,
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(mixed.shape[-2:])),
            "labels": labels,
            "difficult": torch.cat([target["difficult"], target_b["difficult"]]),
            "weights": weights,
            "mixed_with": target_b["image_id"],
        }


class KeyedBatchSampler(torch.utils.data.Sampler[list[SampleKey]]):
    """Batches of ``SampleKey`` for one epoch: indices from ``sampler`` (e.g. a
    ``DistributedSampler``), the size from ``size_at(iteration)`` where the iteration
    counts from ``first_iteration`` (so random shapes agree across ranks and resumes)."""

    def __init__(
        self,
        sampler: torch.utils.data.Sampler[int],
        batch_size: int,
        *,
        epoch: int,
        first_iteration: int,
        size_at: Callable[[int], int | None],
        drop_last: bool = True,
    ):
        self.batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
        self.epoch = epoch
        self.first_iteration = first_iteration
        self.size_at = size_at

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step, indices in enumerate(self.batches):
            size = self.size_at(self.first_iteration + step)
            yield [SampleKey(self.epoch, index, size) for index in indices]
