"""Label smoothing (§3.2): (1 - eps) q + eps / K for softmax, [eps, 1 - eps] for sigmoid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bof.tricks.label_smoothing import default_sigmoid_eps, smooth_sigmoid_targets, smoothed_cross_entropy


def smooth_softmax_targets(onehot: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 3 written out: ``q' = (1 - eps) q + eps / K``."""
    return onehot * (1.0 - eps) + eps / onehot.shape[-1]


def test_cross_entropy_is_eq_3s_smoothed_targets():
    """Faster R-CNN's classifier (and pretraining) never builds q': F.cross_entropy's
    label_smoothing is Eq. 3's cross-entropy, per box weight and all."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator)
    labels = torch.tensor([0, 1, 4, 2, 2, 3])
    weights = torch.rand(6, generator=generator)
    targets = smooth_softmax_targets(F.one_hot(labels, 5).float(), 0.2)
    manual = -(targets * logits.log_softmax(-1)).sum(-1)
    assert smoothed_cross_entropy(logits, labels, 0.2).item() == pytest.approx(manual.mean().item(), rel=1e-6)
    assert smoothed_cross_entropy(logits, labels, 0.2, weights).item() == pytest.approx(
        (manual * weights).mean().item(), rel=1e-6
    )


def test_sigmoid_targets():
    onehot = F.one_hot(torch.tensor([1]), 3).float()
    assert smooth_sigmoid_targets(onehot, 0.025).tolist() == [pytest.approx([0.025, 0.975, 0.025])]
    assert torch.equal(smooth_sigmoid_targets(onehot, 0.0), onehot)
    assert default_sigmoid_eps(20) == 1 / 40 and default_sigmoid_eps(10) == 1 / 40 and default_sigmoid_eps(80) == 1 / 80
