"""The bag of freebies for your own detector and data: one import, every piece bof trains with.

    from bof.freebies import (weighted_losses, TrainingSet, DetectionMixup, SingleStageAugment,
                              TwoStageAugment, build_scheduler, convert_batchnorm, ...)

docs/library.md shows each in a line or two and a runnable example (examples/train_torchvision.py).
"""

from bof.data.detection import collate_detection
from bof.data.training import KeyedBatchSampler, SampleKey, TrainingSet
from bof.models.weighted import honours_box_weights, torchvision_inputs, weighted_losses
from bof.tricks.augmentation import DetectionTransform, SingleStageAugment, TwoStageAugment
from bof.tricks.label_smoothing import default_sigmoid_eps, smooth_sigmoid_targets, smoothed_cross_entropy
from bof.tricks.lr_schedule import build_scheduler, lr_at
from bof.tricks.mixup import BatchMixup, ClassificationMixup, DetectionMixup, mix_classification, mix_detection
from bof.tricks.random_shapes import shape_at, shape_range
from bof.tricks.sync_bn import convert_batchnorm
from bof.tricks.target import Target
from bof.tricks.weight_decay import parameter_groups

__all__ = [
    "BatchMixup",
    "ClassificationMixup",
    "DetectionMixup",
    "DetectionTransform",
    "KeyedBatchSampler",
    "SampleKey",
    "SingleStageAugment",
    "Target",
    "TrainingSet",
    "TwoStageAugment",
    "build_scheduler",
    "collate_detection",
    "convert_batchnorm",
    "default_sigmoid_eps",
    "honours_box_weights",
    "lr_at",
    "mix_classification",
    "mix_detection",
    "parameter_groups",
    "shape_at",
    "shape_range",
    "smooth_sigmoid_targets",
    "smoothed_cross_entropy",
    "torchvision_inputs",
    "weighted_losses",
]
