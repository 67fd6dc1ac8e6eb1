"""Faster R-CNN: the paper's C4 network, and losses that follow the matched ground truth's
mixup weight (1 for background), checked against an independent recomputation from IoUs.

The cases are small enough that the samplers take every candidate (at most 256 anchors and
128 RoIs an image), so the recomputation does not depend on their random draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign, box_iou

from bof.models.faster_rcnn import Res5Head, faster_rcnn

SIZE = 96  # 6 x 6 positions at stride 16


def small_model(**kwargs):
    torch.manual_seed(0)
    return faster_rcnn(3, backbone="small_resnet", width=0.125, min_size=SIZE, max_size=SIZE, **kwargs)


def two_images(weights_a=(1.0, 0.3), weight_b=0.0):
    """Image a: two boxes of different classes and weights; image b: one box of weight ``weight_b``."""
    return [
        {
            "boxes": torch.tensor([[8.0, 8, 40, 40], [44, 30, 92, 90]]),
            "labels": torch.tensor([1, 3]),  # already shifted past background, as inside the detector
            "weights": torch.tensor(weights_a),
        },
        {"boxes": torch.tensor([[20.0, 24, 60, 56]]), "labels": torch.tensor([2]), "weights": torch.tensor([weight_b])},
    ]


def features_of(model, images):
    image_list = ImageList(images, [(SIZE, SIZE)] * len(images))
    return image_list, {"0": model.detector.backbone(images)}


def test_default_is_the_papers_c4_network():
    model = faster_rcnn(20, backbone="resnet50")
    detector = model.detector
    assert detector.backbone.out_channels == 1024  # conv1 .. layer3: stride 16
    assert list(detector.backbone.named_children())[-1][0] == "layer3"
    assert isinstance(detector.roi_heads.box_head, Res5Head)  # layer4 on the pooled RoIs
    pooler = detector.roi_heads.box_roi_pool
    assert isinstance(pooler, MultiScaleRoIAlign) and pooler.output_size == (14, 14) and pooler.featmap_names == ["0"]
    assert detector.rpn.anchor_generator.num_anchors_per_location() == [15]
    assert detector.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    assert detector.rpn._pre_nms_top_n == {"training": 12000, "testing": 6000}
    assert detector.rpn._post_nms_top_n == {"training": 2000, "testing": 300}
    assert detector.roi_heads.nms_thresh == 0.3 and detector.rpn.min_size == 16
    assert detector.roi_heads.box_predictor.cls_score.out_features == 21
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert any(".conv1." in f".{n}" or n.startswith("detector.backbone.conv1") for n in frozen)
    assert all("layer2" not in name and "layer3" not in name for name in frozen)
    fpn = faster_rcnn(20, backbone="resnet50", fpn=True).detector
    assert fpn.backbone.out_channels == 256 and fpn.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]


def test_anchors_are_centred_in_their_cells():
    model = small_model()
    images = torch.rand(1, 3, SIZE, SIZE)
    image_list, features = features_of(model, images)
    anchors = model.detector.rpn.anchor_generator(image_list, list(features.values()))[0]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert sorted(centres[:, 0].unique().tolist()) == [8.0 + 16 * k for k in range(6)]


def reference_rpn_losses(model, images, targets):
    """Objectness BCE and smooth-L1 (beta 1/9) box loss, from IoUs, with the matched box's weight
    on positives, weight 1 on negatives, and anchors crossing the image border left out."""
    rpn = model.detector.rpn
    image_list, features = features_of(model, images)
    anchors = rpn.anchor_generator(image_list, list(features.values()))
    logits, deltas = concat_box_prediction_layers(*rpn.head(list(features.values())))
    logits = logits.reshape(len(images), -1)
    deltas = deltas.reshape(len(images), -1, 4)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    objectness_terms, box_terms, sampled = [], [], 0
    for index, target in enumerate(targets):
        a = anchors[index]
        iou = box_iou(a, target["boxes"])  # [A, G]
        best, matched = iou.max(dim=1)
        positive = best >= 0.7
        positive |= (iou == iou.max(dim=0).values[None]).any(dim=1)  # each box's best anchors
        negative = (best < 0.3) & ~positive
        inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= SIZE) & (a[:, 3] <= SIZE)
        positive, negative = positive & inside, negative & inside
        assert positive.sum() <= 128 and (positive | negative).sum() <= 256  # the sampler takes all
        weight = torch.where(positive, target["weights"][matched], torch.ones(len(a)))
        chosen = positive | negative
        objectness_terms.append(
            F.binary_cross_entropy_with_logits(logits[index][chosen], positive[chosen].float(), reduction="none")
            * weight[chosen]
        )
        goal = coder.encode_single(target["boxes"][matched[positive]], a[positive])
        box_terms.append(
            F.smooth_l1_loss(deltas[index][positive], goal, beta=1 / 9, reduction="none").sum(1) * weight[positive]
        )
        sampled += int(chosen.sum())
    return torch.cat(objectness_terms).sum() / sampled, torch.cat(box_terms).sum() / sampled


def test_rpn_losses_follow_each_anchors_matched_box_weight():
    model = small_model().train()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = two_images()
    image_list, features = features_of(model, images)
    _, losses = model.detector.rpn(image_list, features, targets)
    objectness, box = reference_rpn_losses(model, images, targets)
    assert losses["loss_objectness"].item() == pytest.approx(objectness.item(), rel=1e-5)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(box.item(), rel=1e-5)


def reference_roi_losses(model, features, proposals, targets, smoothing):
    """Softmax CE (smoothed) and smooth-L1 (beta 1, GluonCV) on the class-specific box, over
    every proposal plus the ground truth; positives (IoU >= 0.5) weigh their box's weight,
    background weighs 1; both terms are divided by the number of sampled RoIs."""
    heads = model.detector.roi_heads
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    rois = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets, strict=True)]
    # one pass over every image's RoIs, as the heads do (the small backbone's res5 has batch BN)
    logits, regression = heads.box_predictor(
        heads.box_head(heads.box_roi_pool(features, rois, [(SIZE, SIZE)] * len(rois)))
    )
    class_terms, box_terms, start = [], [], 0
    for image_rois, target in zip(rois, targets, strict=True):
        mine = slice(start, start + len(image_rois))
        start += len(image_rois)
        best, matched = box_iou(image_rois, target["boxes"]).max(dim=1)
        foreground = best >= 0.5
        labels = torch.where(foreground, target["labels"][matched], 0)
        weight = torch.where(foreground, target["weights"][matched], 1.0)
        class_terms.append(F.cross_entropy(logits[mine], labels, label_smoothing=smoothing, reduction="none") * weight)
        boxes = regression[mine].reshape(len(image_rois), -1, 4)[foreground, labels[foreground]]
        goal = coder.encode_single(target["boxes"][matched[foreground]], image_rois[foreground])
        box_terms.append(F.smooth_l1_loss(boxes, goal, beta=1.0, reduction="none").sum(1) * weight[foreground])
    return torch.cat(class_terms).sum() / start, torch.cat(box_terms).sum() / start


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_roi_losses_follow_the_matched_box_weight_and_background_weighs_one(smoothing):
    model = small_model(label_smoothing=smoothing).train()
    heads = model.detector.roi_heads
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, SIZE, SIZE, generator=generator)
    targets = two_images()
    _, features = features_of(model, images)
    proposals = []
    for target in targets:  # jittered copies of each box (foreground) and random boxes (mostly background)
        jittered = target["boxes"].repeat(3, 1) + torch.randn(3 * len(target["boxes"]), 4, generator=generator) * 3
        corners = torch.rand(6, 2, generator=generator) * 60
        proposals.append(torch.cat([jittered, torch.cat([corners, corners + 12 + 20 * torch.rand(6, 2)], 1)]))
    _, losses = heads(features, proposals, [(SIZE, SIZE)] * 2, targets)
    classification, box = reference_roi_losses(model, features, proposals, targets, smoothing)
    assert losses["loss_classifier"].item() == pytest.approx(classification.item(), rel=1e-4)
    assert losses["loss_box_reg"].item() == pytest.approx(box.item(), rel=1e-4)


def test_a_box_of_weight_zero_leaves_the_background_losses():
    """Image b's only box weighs 0: its box terms vanish, its background RoIs and anchors still count."""
    model = small_model().train()
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    target = two_images(weight_b=0.0)[1:]
    target[0]["labels"] = target[0]["labels"] - 1  # the public forward takes 0-based labels
    losses = model(list(images), target)
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_classifier"].item() > 0.1 and losses["loss_objectness"].item() > 0.1


def test_eval_returns_zero_based_labels():
    model = small_model().eval()
    detections = model([torch.rand(3, 90, 110)])[0]
    assert set(detections) == {"boxes", "scores", "labels"}
    assert (detections["labels"] >= 0).all() and (detections["labels"] < 3).all()


def test_the_box_classifier_loss_is_the_smoothed_cross_entropy_kernel():
    """The classifier term is bof.tricks.label_smoothing.smoothed_cross_entropy with the boxes'
    mixup weights: the tested kernel is the one that runs."""
    from bof.tricks.label_smoothing import smoothed_cross_entropy

    heads = small_model(label_smoothing=0.1).detector.roi_heads
    generator = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(8, 4, generator=generator), torch.randn(8, 16, generator=generator)
    labels, weights = torch.tensor([0, 1, 3, 0, 2, 2, 0, 3]), torch.rand(8, generator=generator)
    losses = heads.box_loss(logits, boxes, weights, labels, torch.randn(8, 4, generator=generator))
    assert heads.label_smoothing == 0.1
    assert torch.equal(
        losses["loss_classifier"], smoothed_cross_entropy(logits, labels, heads.label_smoothing, weights)
    )


def test_weights_saved_before_the_box_predictor_hook_still_load():
    """Until 2026-12-04 a wrapper held the box predictor one level down (`...box_predictor.predictor.*`)."""
    saved = small_model().state_dict()
    old = {k.replace("roi_heads.box_predictor.", "roi_heads.box_predictor.predictor."): v for k, v in saved.items()}
    assert any(".box_predictor.predictor." in key for key in old)
    model = faster_rcnn(3, backbone="small_resnet", width=0.125, min_size=SIZE, max_size=SIZE)
    model.load_state_dict(old)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())
