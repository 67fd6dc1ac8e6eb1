"""Datasets, augmentation and input sizes for a training config: plain functions, no registry."""

from __future__ import annotations

import dataclasses
from functools import partial

from bof.config import DataConfig, MixupConfig, TrainConfig
from bof.data.coco import CocoDetection
from bof.data.detection import DetectionDataset
from bof.data.training import TrainingSet
from bof.data.voc import VOCDetection
from bof.models.faster_rcnn import FasterRCNN
from bof.models.yolov3 import YOLOv3
from bof.tricks.augmentation import SingleStageAugment, TwoStageAugment
from bof.tricks.mixup import DetectionMixup
from bof.tricks.random_shapes import shape_at, shape_range


def _image_sets(items: tuple[str, ...]) -> list[tuple[str, str]]:
    return [tuple(item.split(":")) for item in items]  # type: ignore[misc]


def open_split(data: DataConfig, split: str, *, check_images: str = "header") -> DetectionDataset:
    """The ``train`` or ``val`` dataset of a config, without transforms."""
    items = data.train if split == "train" else data.val
    if data.format == "voc":
        return VOCDetection(data.root, _image_sets(items), on_error=data.on_error, check_images=check_images)
    root = data.val_root if split == "val" and data.val_root else data.root
    # Training leaves out crowd regions and the images left empty (GluonCV's train scripts:
    # COCODetection(use_crowd=False), skip_empty=True); evaluation keeps every image and crowd.
    training = split == "train"
    return CocoDetection(
        root,
        items[0],
        on_error=data.on_error,
        check_images=check_images,
        use_crowd=not training,
        skip_empty=training,
    )


def augmentation(config: TrainConfig):
    """The §3.3 pipeline for the detector family; "augmentation off" keeps only the resize."""
    if config.model.arch == "yolov3":
        if not config.tricks.augmentation:
            return SingleStageAugment.off()
        return SingleStageAugment(max_expand_ratio=config.augment.max_expand_ratio)
    return TwoStageAugment(config.model.min_size, config.model.max_size, flip=config.tricks.augmentation)


def detection_mixup(config: MixupConfig) -> DetectionMixup | None:
    """The mixup the config asks for; None when it is off."""
    return None if config.mode == "off" else DetectionMixup(**dataclasses.asdict(config))


def training_set(config: TrainConfig, dataset: DetectionDataset) -> TrainingSet:
    """The config's training view of ``dataset``, for bof's own detector of ``model.arch`` (whose
    losses read mixup's box weights)."""
    mixup = detection_mixup(config.tricks.mixup)
    detector = YOLOv3 if config.model.arch == "yolov3" else FasterRCNN
    return TrainingSet(
        dataset, augmentation(config), mixup=mixup, epochs=config.optim.epochs, seed=config.seed, detector=detector
    )


def _fixed(size, iteration):
    return size


def size_schedule(config: TrainConfig):
    """iteration -> the batch's input size: random shapes (§3.6), the fixed size, or None (two-stage)."""
    shapes = config.tricks.random_shapes
    if config.model.arch != "yolov3":
        return partial(_fixed, None)
    if not shapes.enabled:
        return partial(_fixed, config.model.input_size)
    return partial(shape_at, sizes=shape_range(shapes.min, shapes.max), interval=shapes.interval, seed=config.seed)
