"""Faster R-CNN: the weighted/smoothed losses reduce to torchvision's with weight 1 and eps 0,
follow the matched ground truth's mixup weight, and the detector keeps 0-based labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork

from bof.models.faster_rcnn import _matched_weights, faster_rcnn


def small_model(**kwargs):
    torch.manual_seed(0)
    return faster_rcnn(3, backbone="small_resnet", width=0.125, min_size=96, max_size=128, **kwargs)


def batch(weights=(1.0, 1.0)):
    images = [torch.rand(3, 96, 120, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12, 50, 60], [60, 20, 110, 90]]),
            "labels": torch.tensor([0, 2]),
            "weights": torch.tensor(weights),
        },
        {"boxes": torch.tensor([[5.0, 5, 40, 40]]), "labels": torch.tensor([1]), "weights": torch.tensor([weights[0]])},
    ]
    return images, targets


def test_matched_weights():
    matched = torch.tensor([1, -1, 0, -2, 1])
    assert _matched_weights(matched, {"weights": torch.tensor([0.3, 0.7])}).tolist() == pytest.approx(
        [0.7, 1.0, 0.3, 1.0, 0.7]
    )
    assert _matched_weights(matched, {}).tolist() == [1.0] * 5


def test_rpn_loss_equals_torchvision_with_unit_weights():
    model = small_model()
    rpn = model.detector.rpn
    generator = torch.Generator().manual_seed(1)
    anchors = [torch.rand(300, 2, generator=generator) * 80 for _ in range(2)]
    anchors = [torch.cat([a, a + 10 + torch.rand(300, 2, generator=generator) * 40], 1) for a in anchors]
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 60, 60]]), "weights": torch.tensor([1.0])},
        {"boxes": torch.tensor([[20.0, 5, 50, 70]])},
    ]
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    reference_labels, reference_matched = RegionProposalNetwork.assign_targets_to_anchors(rpn, anchors, targets)
    assert all(torch.equal(a, b) for a, b in zip(labels, reference_labels, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(matched, reference_matched, strict=True))
    objectness = torch.randn(600, 1, generator=generator)
    deltas = torch.randn(600, 4, generator=generator)
    regression = [torch.randn(300, 4, generator=generator) for _ in range(2)]
    torch.manual_seed(5)
    ours = rpn.compute_loss(objectness, deltas, labels, regression)
    torch.manual_seed(5)
    theirs = RegionProposalNetwork.compute_loss(rpn, objectness, deltas, labels, regression)
    assert [o.item() for o in ours] == pytest.approx([t.item() for t in theirs], rel=1e-6)
    rpn._anchor_weights = [w * 0.5 for w in rpn._anchor_weights]  # every anchor's box at weight 0.5
    torch.manual_seed(5)
    halved = rpn.compute_loss(objectness, deltas, labels, regression)
    assert [h.item() for h in halved] == pytest.approx([0.5 * t.item() for t in theirs], rel=1e-6)


def test_box_loss_equals_fastrcnn_loss_and_smooths_and_weights():
    heads = small_model().detector.roi_heads
    generator = torch.Generator().manual_seed(2)
    logits, regression = torch.randn(8, 4, generator=generator), torch.randn(8, 16, generator=generator)
    labels, targets = torch.tensor([0, 1, 3, 0, 2, 0, 1, 0]), torch.randn(8, 4, generator=generator)
    ones = torch.ones(8)
    ours = heads.box_loss(logits, regression, ones, labels, targets)
    classifier, box = fastrcnn_loss(logits, regression, [labels], [targets])
    assert ours["loss_classifier"].item() == pytest.approx(classifier.item(), rel=1e-6)
    assert ours["loss_box_reg"].item() == pytest.approx(box.item(), rel=1e-6)
    heads.label_smoothing = 0.1
    smoothed = heads.box_loss(logits, regression, ones, labels, targets)
    assert smoothed["loss_classifier"].item() == pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6
    )
    weights = torch.tensor([1.0, 0.5, 0.25, 1, 0.5, 1, 1, 1])
    weighted = heads.box_loss(logits, regression, weights, labels, targets)
    per_sample = F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")
    assert weighted["loss_classifier"].item() == pytest.approx((per_sample * weights).mean().item(), rel=1e-6)


def test_training_uses_the_mixup_weights_of_matched_boxes():
    model = small_model()
    model.train()
    images, targets = batch((1.0, 1.0))
    torch.manual_seed(3)
    full = model(images, targets)
    images, targets = batch((0.5, 0.5))
    torch.manual_seed(3)
    half = model(images, targets)
    assert set(full) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert half["loss_box_reg"].item() == pytest.approx(0.5 * full["loss_box_reg"].item(), rel=1e-4)
    assert half["loss_rpn_box_reg"].item() == pytest.approx(0.5 * full["loss_rpn_box_reg"].item(), rel=1e-4)
    assert half["loss_classifier"].item() < full["loss_classifier"].item()  # background samples keep weight 1


def test_eval_returns_zero_based_labels():
    model = small_model().eval()
    detections = model([torch.rand(3, 90, 110)])[0]
    assert set(detections) == {"boxes", "scores", "labels"}
    assert (detections["labels"] >= 0).all() and (detections["labels"] < 3).all()
