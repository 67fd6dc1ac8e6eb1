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

from bof.config import MixupConfig, MixupMode
from bof.errors import ConfigError
from bof.tricks.random import bernoulli, beta, randint

__all__ = ["ClassificationMixup", "DetectionMixup", "mix_classification", "mix_detection"]


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
