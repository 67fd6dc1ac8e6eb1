"""Visually coherent image mixup for detection, and mixup for classification pretraining (§3.1).

Detection (Table 1): two *raw* images are blended on a canvas of ``max(h1, h2) x max(w1, w2)``,
both placed at the top-left without resizing, so every object keeps its geometry; the
labels of both images are kept and each box carries a loss weight: ``lam`` for the first
image's boxes, ``1 - lam`` for the second's (the paper's "weighted loss"). The mixing
ratio is drawn from Beta(a, b) with a, b >= 1 (visually coherent), or fixed at 0.5.

Classification (Tables 5-6, [8, 23]): per batch ``lam ~ Beta(0.2, 0.2)``, each image mixed
with its partner in the reversed batch, targets ``lam * y1 + (1 - lam) * y2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from bof.config import MixupConfig, MixupMode
from bof.errors import ConfigError
from bof.tricks.augmentation import PER_BOX_KEYS, uint8_pixels, xyxy_boxes
from bof.tricks.random import bernoulli, beta, randint, seed_from

__all__ = [
    "BatchMixup",
    "ClassificationMixup",
    "DetectionMixup",
    "check_reads_weights",
    "mix_classification",
    "mix_detection",
    "mix_samples",
]


def mix_detection(
    img_a: torch.Tensor,
    boxes_a: torch.Tensor,
    labels_a: torch.Tensor,
    img_b: torch.Tensor,
    boxes_b: torch.Tensor,
    labels_b: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend two uint8 images [3, Ha, Wa] and [3, Hb, Wb] with their XYXY boxes [Na, 4], [Nb, 4].

    Returns ``(image [3, max(Ha, Hb), max(Wa, Wb)] uint8, boxes [Na + Nb, 4], labels [Na + Nb],
    weights [Na + Nb])``: pixels ``lam * a + (1 - lam) * b`` rounded to nearest, canvas
    that neither image covers is zero, boxes unchanged (no image moves or scales),
    weights ``lam`` for a's boxes and ``1 - lam`` for b's. The image is channels-last.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    # OpenCV on the HWC views (no copy for channels-last images, as decoded): one rounded pass
    # where both images lie, a scaled copy where only one does, zeros elsewhere
    a, b = (np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in (img_a, img_b))
    both_h, both_w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    canvas = np.zeros((max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1]), 3), dtype=np.uint8)
    canvas[:both_h, :both_w] = cv2.addWeighted(a[:both_h, :both_w], lam, b[:both_h, :both_w], 1.0 - lam, 0.0)
    for alone, weight in ((a, lam), (b, 1.0 - lam)):
        height, width = alone.shape[:2]
        if height > both_h:
            canvas[both_h:height, :width] = cv2.convertScaleAbs(alone[both_h:height, :width], alpha=weight)
        if width > both_w:
            canvas[:both_h, both_w:width] = cv2.convertScaleAbs(alone[:both_h, both_w:width], alpha=weight)
    image = torch.from_numpy(canvas).permute(2, 0, 1)
    boxes = torch.cat([boxes_a.float(), boxes_b.float()])
    labels = torch.cat([labels_a, labels_b])
    weights = torch.cat([torch.full((len(boxes_a),), lam), torch.full((len(boxes_b),), 1.0 - lam)])
    return image, boxes, labels, weights


@dataclass(frozen=True)
class DetectionMixup(MixupConfig):
    """The mixup a `MixupConfig` describes (Table 1's variants, and when they are on), with its
    draws; a library user's default is the paper's Beta(1.5, 1.5)."""

    mode: MixupMode = "beta"

    def draw(self, generator: torch.Generator, index: int, num_samples: int) -> tuple[float, int] | None:
        """(lam, partner index) or ``None`` when this sample is not mixed (lam drawn as 1).

        The partner is uniform over the other samples, as in the authors' GluonCV code.
        """
        if num_samples < 2:
            return None
        lam = 0.5 if self.mode == "fixed" else min(1.0, max(0.0, beta(generator, self.alpha, self.beta)))
        if lam >= 1.0:
            return None
        partner = randint(generator, 0, num_samples - 2)
        return lam, partner + (partner >= index)


def check_reads_weights(mixup: DetectionMixup | None, detector: object | None) -> None:
    """Refuse weighted mixup for a detector whose losses ignore ``target["weights"]`` (a stock
    torchvision one would train as if every faded box were whole): it must declare
    ``honours_box_weights`` (bof's detectors; ``bof.models.weighted.weighted_losses`` sets it)."""
    if mixup is None or mixup.mode == "off" or not mixup.weighted:
        return
    detector = getattr(detector, "module", detector)  # DistributedDataParallel / DataParallel wrap the model
    if not getattr(detector, "honours_box_weights", False):
        reader = "no detector was given to" if detector is None else f"{type(detector).__name__} does not"
        raise ValueError(
            f"mixup weights each box by its image's share, but {reader} read the weights: pass "
            f"detector=<your model after bof.models.weighted.weighted_losses>, or mix unweighted (weighted=False)"
        )


def mix_samples(image_a, target_a, image_b, target_b, lam: float, *, weighted: bool = True):
    """`mix_detection` of two samples of any image type and box format: the blend in image a's type,
    its boxes in a's format with the mixed canvas, the per-box tensors of both concatenated and
    ``weights`` the boxes' shares (1 unweighted); ``mixed_with`` is b's ``image_id`` when it has one."""
    (pixels_a, restore), (pixels_b, _) = (uint8_pixels(image, "mixup") for image in (image_a, image_b))
    boxes_a, boxes_b = (xyxy_boxes(target["boxes"].to(torch.float32)) for target in (target_a, target_b))
    mixed, boxes, labels, weights = mix_detection(
        pixels_a, boxes_a, target_a["labels"], pixels_b, boxes_b, target_b["labels"], lam
    )
    boxes = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(mixed.shape[-2:]))
    target = {
        **target_a,
        "boxes": F.convert_bounding_box_format(boxes, new_format=target_a["boxes"].format),
        "labels": labels,
        "weights": weights if weighted else torch.ones_like(weights),
    }
    for key in PER_BOX_KEYS:
        if key in ("labels", "weights") or (key not in target_a and key not in target_b):
            continue
        if key not in target_a or key not in target_b:
            raise ValueError(
                f"mixup: one image's target has {key!r} and its partner's has not; give every target the same keys"
            )
        target[key] = torch.cat([target_a[key], target_b[key]])
    if "image_id" in target_b:
        target["mixed_with"] = target_b["image_id"]
    return restore(mixed), target


class BatchMixup(v2.Transform):
    """Detection mixup of a collated batch, the way torchvision's ``v2.MixUp`` mixes classification
    batches: each image is blended with another image of the batch (drawn by ``mixup``, uniform over
    the others), both box sets kept, each box weighted by its image's share; every image's
    ``loss_weight`` is the mixup's ``loss_scale``. For a DataLoader's ``collate_fn`` (a function of
    your module, so that spawned workers can pickle it): ``def collate(batch): return
    mixup(*collate_detection(batch))``. Whether an epoch mixes (``off_last_epochs``) is the caller's
    loop to say; `TrainingSet` mixes with a partner from the whole dataset and switches off by itself."""

    def __init__(self, mixup: DetectionMixup | None = None, *, detector: object | None = None):
        super().__init__()
        self.mixup = mixup if mixup is not None else DetectionMixup()
        check_reads_weights(self.mixup, detector)

    def forward(self, images, targets, *, generator: torch.Generator | None = None):
        if generator is None:  # torch's global stream, as torchvision's transforms draw
            generator = torch.Generator().manual_seed(seed_from())
        mixed_images, mixed_targets = [], []
        for index, (image, target) in enumerate(zip(images, targets, strict=True)):
            draw = None if self.mixup.mode == "off" else self.mixup.draw(generator, index, len(images))
            if draw is None:
                image, target = image, {**target, "weights": target.get("weights", torch.ones(len(target["labels"])))}
            else:
                lam, partner = draw
                image, target = mix_samples(
                    image, target, images[partner], targets[partner], lam, weighted=self.mixup.weighted
                )
            mixed_images.append(image)
            mixed_targets.append({**target, "loss_weight": self.mixup.loss_scale if self.mixup.mode != "off" else 1.0})
        return mixed_images, mixed_targets


def mix_classification(images: torch.Tensor, targets: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch with itself reversed: images [B, C, H, W] float, targets [B, K] (one-hot or soft)."""
    return lam * images + (1 - lam) * images.flip(0), lam * targets + (1 - lam) * targets.flip(0)


@dataclass(frozen=True)
class ClassificationMixup:
    """Per-batch mixup for backbone pretraining: ``lam ~ Beta(alpha, alpha)``, 0.2 as in [8]."""

    alpha: float = 0.2
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ConfigError(f"classification mixup alpha must be > 0, got {self.alpha}")

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if not bernoulli(generator, self.probability):
            return images, targets
        return mix_classification(images, targets, beta(generator, self.alpha, self.alpha))
