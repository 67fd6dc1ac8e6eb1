"""Classification-head label smoothing (§3.2, Eq. 3).

Softmax heads (Faster R-CNN's box classifier through `smoothed_cross_entropy`, backbone
pretraining): ``q' = (1 - eps) q + eps / K``, which ``F.cross_entropy(label_smoothing=eps)``
computes without materialising ``q'``.
Sigmoid heads (YOLOv3's independent class scores): the targets' range is narrowed instead,
the true class to ``1 - eps`` and every other class to ``eps``; the authors' GluonCV code
uses ``eps = min(1 / K, 1 / 40)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["default_sigmoid_eps", "smooth_sigmoid_targets", "smoothed_cross_entropy"]


def smooth_sigmoid_targets(onehot: torch.Tensor, eps: float) -> torch.Tensor:
    """Map sigmoid targets [..., K] from {0, 1} into [eps, 1 - eps]: ``q (1 - 2 eps) + eps``."""
    return onehot * (1.0 - 2.0 * eps) + eps


def default_sigmoid_eps(num_classes: int) -> float:
    """GluonCV's choice for YOLOv3: ``min(1 / K, 1 / 40)``."""
    return min(1.0 / num_classes, 1.0 / 40)


def smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, eps: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of logits [N, K] against integer labels [N] smoothed by ``eps``;
    ``weights`` [N] (e.g. mixup box weights) scale each term, normalised by N."""
    losses = F.cross_entropy(logits, labels, label_smoothing=eps, reduction="none")
    if weights is not None:
        losses = losses * weights
    return losses.mean() if len(labels) else losses.sum()  # mean, as torch's reduction computes it
