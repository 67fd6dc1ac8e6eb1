"""The training view of a detection dataset: mixup, then augmentation, keyed by (epoch, index, size).

Every random draw of a sample (mixup ratio, mixup partner, augmentation parameters) comes
from one generator seeded by (seed, epoch, index), inside ``__getitem__``, that is inside
the data-loader worker: the draws do not depend on the number of workers. The reference
implementation switched mixup on from the parent process after the worker pool existed, so
with workers it silently never mixed; here the key itself says which epoch it is, so a
persistent worker cannot hold a stale switch. The batch sampler puts the batch's input size
(random shapes) into the key as well.

With a plain ``DataLoader(training_set, shuffle=True, num_workers=k)`` the set is indexed by
integers and the epoch is the one ``set_epoch`` gave (as ``DistributedSampler.set_epoch``;
indexing before any call raises). An index asked twice in one epoch in one process warns once
(``num_workers=0`` or persistent workers: ``set_epoch`` forgotten, or a sampler that repeats
indices); a forgotten call with fresh workers each epoch cannot be seen from inside them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torchvision import tv_tensors

from bof.data.detection import DetectionDataset, Target
from bof.tricks.augmentation import DetectionTransform
from bof.tricks.mixup import DetectionMixup, check_reads_weights, mix_samples
from bof.tricks.random import generator_for, seed_from

__all__ = ["KeyedBatchSampler", "SampleKey", "TrainingSet"]

# bof's DetectionTransform (called with the key's size and the sample's generator), or any
# transforms-v2 transform of (image, target) (called under torch's global stream, seeded per sample)
Augment = Callable[..., tuple[tv_tensors.Image, Target]]


class SampleKey(NamedTuple):
    epoch: int
    index: int
    size: int | None = None  # the batch's input size; None lets the transform decide


class TrainingSet(torch.utils.data.Dataset):
    """``dataset[key]`` -> (image, target) with ``target["weights"]`` (mixup box weights, 1 when
    unmixed) and ``target["loss_weight"]`` (how much the image's loss counts: mixup's
    ``loss_scale`` in the epochs it mixes, GluonCV's Faster R-CNN ``mix_ratio``; 1 otherwise).

    ``dataset[i]`` gives (image, target) with target["boxes"] a ``tv_tensors.BoundingBoxes`` and
    target["labels"]; ``difficult`` and ``image_id`` are optional. Weighted mixup needs the
    ``detector`` that trains on it to read the weights (``honours_box_weights``: bof's detectors,
    a torchvision detector after ``bof.models.weighted.weighted_losses``); otherwise it raises,
    rather than train as if every faded box were whole."""

    def __init__(
        self,
        dataset: DetectionDataset,
        augment: Augment,
        *,
        mixup: DetectionMixup | None,
        epochs: int,
        seed: int,
        detector: object | None = None,
    ):
        check_reads_weights(mixup, detector)
        if mixup is not None and mixup.mode != "off" and mixup.off_last_epochs >= epochs:
            warnings.warn(
                f"mixup is off for the last {mixup.off_last_epochs} of {epochs} epochs: it never mixes "
                f"(set off_last_epochs below {epochs})",
                stacklevel=2,
            )
        self.dataset = dataset
        self.augment = augment
        self.mixup = mixup
        self.epochs = epochs
        self.seed = seed
        self.epoch: int | None = None  # of integer indices: set_epoch's
        self._asked: set[int] = set()
        self._warned = False

    @property
    def _keyed_augment(self) -> bool:
        """bof's transforms, and callables of (image, target, *, size, generator), take the sample's
        generator; any other (a transforms-v2 pipeline) draws from torch's stream, seeded per sample."""
        return isinstance(self.augment, DetectionTransform) or _takes_generator(self.augment)

    def set_epoch(self, epoch: int) -> None:
        """The epoch integer indices belong to (a plain DataLoader's); call it before each epoch."""
        self.epoch = epoch
        self._asked = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey | int) -> tuple[tv_tensors.Image, Target]:
        if not isinstance(key, SampleKey):
            key = self._key(key)
        generator = generator_for(self.seed, key.epoch, key.index)
        image, target = self.dataset[key.index]
        target["weights"] = torch.ones(len(target["labels"]))
        target["loss_weight"] = 1.0
        if self.mixup is not None and self.mixup.active(key.epoch, self.epochs):
            target["loss_weight"] = self.mixup.loss_scale
            draw = self.mixup.draw(generator, key.index, len(self.dataset))
            if draw is not None:
                image, target = self._mix(image, target, *draw)
        if self._keyed_augment:
            return self.augment(image, target, size=key.size, generator=generator)
        if key.size is not None:
            raise ValueError(f"{type(self.augment).__name__} cannot take a batch's input size (random shapes)")
        with torch.random.fork_rng(devices=[]):  # a v2 transform's draws from torch's CPU stream, seeded by the sample
            torch.default_generator.manual_seed(seed_from(generator))
            return self.augment(image, target)

    def _key(self, index: int) -> SampleKey:
        if self.epoch is None:
            raise RuntimeError(
                "TrainingSet indexed by integers (a plain DataLoader): call set_epoch(epoch) before each epoch, "
                "so that each epoch draws its own mixup and augmentation"
            )
        index = int(index)
        if index in self._asked and not self._warned:
            self._warned = True
            warnings.warn(
                f"TrainingSet: sample {index} asked twice in epoch {self.epoch}: both get the same draws; call "
                f"set_epoch(epoch) before each epoch (a sampler that repeats indices repeats their draws)",
                stacklevel=3,
            )
        self._asked.add(index)
        return SampleKey(self.epoch, index)

    def _mix(self, image, target: Target, lam: float, partner: int) -> tuple[tv_tensors.Image, Target]:
        image_b, target_b = self.dataset[partner]
        return mix_samples(image, target, image_b, target_b, lam, weighted=self.mixup.weighted)


def _takes_generator(augment) -> bool:
    try:
        return "generator" in inspect.signature(augment).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): a plain transform
        return False


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
