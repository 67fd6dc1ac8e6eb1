"""`weighted_losses` on stock torchvision detectors: with every weight 1 and no smoothing the
losses are torchvision's (to 1e-6, same inputs and random draws); a box's weight scales exactly
its own anchors' terms (a weight-0 box leaves the background's, which keep weight 1); the state
dict and settings stay; what cannot honour weights raises."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_320_fpn,
    maskrcnn_resnet50_fpn,
    retinanet_resnet50_fpn,
)
from torchvision.ops import sigmoid_focal_loss

from bof.models.weighted import honours_box_weights, weighted_losses

SIZE = 160


def images_and_targets(weights=None):
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=generator), torch.rand(3, SIZE, 128, generator=generator)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 70, 90], [60, 40, 150, 140]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[20.0, 30, 100, 120]]), "labels": torch.tensor([2])},
    ]
    if weights is not None:
        for target, image_weights in zip(targets, weights, strict=True):
            target["weights"] = torch.tensor(image_weights)
    return images, targets


def losses_of(model, images, targets, seed=0):
    torch.manual_seed(seed)  # the RPN's and RoI heads' samplers draw from torch's global stream
    return {name: value.item() for name, value in model(images, targets).items()}


def faster_rcnn():
    torch.manual_seed(0)
    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=SIZE, max_size=SIZE
    ).train()


def retinanet(loss_type="l1"):
    torch.manual_seed(0)
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=SIZE, max_size=SIZE)
    model.head.regression_head._loss_type = loss_type
    return model.train()


@pytest.mark.parametrize("weights", [None, [[1.0, 1.0], [1.0]]], ids=["no weights key", "weights 1"])
def test_faster_rcnn_with_weights_one_has_torchvisions_losses(weights):
    stock = faster_rcnn()
    converted = weighted_losses(copy.deepcopy(stock))
    images, targets = images_and_targets(weights)
    expected, got = losses_of(stock, images, targets), losses_of(converted, images, targets)
    assert set(got) == set(expected) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-7), name
    assert expected["loss_box_reg"] > 0 and expected["loss_rpn_box_reg"] > 0  # positives were sampled


@pytest.mark.parametrize("loss_type", ["l1", "giou"])
def test_retinanet_with_weights_one_has_torchvisions_losses(loss_type):
    stock = retinanet(loss_type)
    converted = weighted_losses(copy.deepcopy(stock))
    images, targets = images_and_targets([[1.0, 1.0], [1.0]])
    expected, got = losses_of(stock, images, targets), losses_of(converted, images, targets)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-6), name


def test_the_state_dict_and_settings_stay():
    stock = faster_rcnn()
    converted = weighted_losses(copy.deepcopy(stock))
    assert list(converted.state_dict()) == list(stock.state_dict())
    assert converted.rpn._pre_nms_top_n == stock.rpn._pre_nms_top_n
    assert converted.roi_heads.fg_bg_sampler.batch_size_per_image == stock.roi_heads.fg_bg_sampler.batch_size_per_image
    converted.load_state_dict(stock.state_dict())  # a torchvision checkpoint still loads
    images, targets = images_and_targets()
    losses_of(converted, images, targets)
    weighted_losses(converted)  # converting twice changes nothing: one hook on the predictor
    losses_of(converted, images, targets)
    assert len(converted.roi_heads.box_predictor._forward_hooks) == 1


def retinanet_reference(model, images, targets, smoothing=0.0):
    """RetinaNet's classification loss recomputed with torchvision's own focal loss, each anchor's
    term times its matched box's weight, background (unmatched) anchors times 1, ignored anchors
    left out, divided by the number of foreground anchors, averaged over images."""
    captured = {}
    original = model.head.compute_loss

    def capture(targets_, head_outputs, anchors, matched_idxs):
        captured.update(outputs=head_outputs, matched=matched_idxs, targets=targets_)
        return original(targets_, head_outputs, anchors, matched_idxs)

    model.head.compute_loss = capture
    losses = model(images, targets)
    del model.head.compute_loss
    per_image = []
    for target, logits, matched in zip(
        captured["targets"], captured["outputs"]["cls_logits"], captured["matched"], strict=True
    ):
        foreground = matched >= 0
        onehot = torch.zeros_like(logits)
        onehot[foreground, target["labels"][matched[foreground]]] = 1.0
        onehot[foreground] = onehot[foreground] * (1 - 2 * smoothing) + smoothing  # background anchors keep 0
        valid = matched >= -1  # -1 below the low threshold (background), -2 between: ignored
        weight = torch.where(foreground, target["weights"][matched.clamp(min=0)], 1.0)
        terms = sigmoid_focal_loss(logits, onehot, reduction="none").sum(1)
        per_image.append((terms * weight)[valid].sum() / max(1, int(foreground.sum())))
    return losses, (sum(per_image) / len(per_image)).item()


@pytest.mark.parametrize("smoothing", [0.0, 0.05])
def test_retinanet_weights_each_anchor_by_its_box_and_background_by_one(smoothing):
    """Smoothing narrows the targets of the anchors matched to a box only: background anchors keep
    target 0 (smoothed, every anchor x class would put a floor under a loss divided by the foreground)."""
    model = weighted_losses(retinanet(), label_smoothing=smoothing)
    images, targets = images_and_targets([[0.0, 0.6], [0.25]])  # a weight-0 box among them
    losses, classification = retinanet_reference(model, images, targets, smoothing)
    assert losses["classification"].item() == pytest.approx(classification, rel=1e-5)


def test_a_weight_zero_box_adds_nothing_to_the_regression():
    model = weighted_losses(retinanet())
    images, targets = images_and_targets([[0.0, 0.0], [0.0]])
    assert losses_of(model, images, targets)["bbox_regression"] == 0.0
    faster = weighted_losses(faster_rcnn())
    losses = losses_of(faster, images, targets)
    assert losses["loss_box_reg"] == 0.0 and losses["loss_rpn_box_reg"] == 0.0
    assert losses["loss_classifier"] > 0 and losses["loss_objectness"] > 0  # background still counts


def test_label_smoothing_is_torchvisions_cross_entropy_option():
    stock, converted = faster_rcnn(), weighted_losses(faster_rcnn(), label_smoothing=0.1)
    images, targets = images_and_targets()
    captured = {}
    stock.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: captured.update(logits=o[0]))
    original = stock.roi_heads.select_training_samples

    def keep_labels(proposals, targets_):
        result = original(proposals, targets_)
        captured["labels"] = torch.cat(result[2])
        return result

    stock.roi_heads.select_training_samples = keep_labels
    losses_of(stock, images, targets)
    expected = torch.nn.functional.cross_entropy(captured["logits"], captured["labels"], label_smoothing=0.1)
    assert losses_of(converted, images, targets)["loss_classifier"] == pytest.approx(expected.item(), rel=1e-6)


def test_what_cannot_honour_weights_raises():
    with pytest.raises(TypeError, match="MaskRCNN has mask or keypoint heads"):
        weighted_losses(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3))
    with pytest.raises(TypeError, match="not a torchvision Faster R-CNN or RetinaNet"):
        weighted_losses(torch.nn.Linear(2, 2))
    model = faster_rcnn()

    class MyRPN(type(model.rpn)):
        pass

    model.rpn.__class__ = MyRPN
    with pytest.raises(TypeError, match="FasterRCNN.rpn is a MyRPN, not torchvision's RegionProposalNetwork"):
        weighted_losses(model)
    with pytest.raises(ValueError, match="Faster R-CNN's"):
        weighted_losses(retinanet(), losses="gluoncv")
    assert not honours_box_weights(faster_rcnn()) and honours_box_weights(weighted_losses(faster_rcnn()))


def test_torchvision_inputs_shifts_labels_past_the_background_and_converts_images_and_boxes():
    from torchvision import tv_tensors

    from bof.models.weighted import torchvision_inputs

    image = torch.full((3, 4, 6), 255, dtype=torch.uint8)
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[1.0, 1, 2, 3]]), format="XYWH", canvas_size=(4, 6))
    target = {
        "boxes": boxes,
        "labels": torch.tensor([0]),
        "weights": torch.tensor([0.4]),
        "difficult": torch.tensor([0]),
    }
    images, targets = torchvision_inputs([image], [target])
    assert images[0].dtype == torch.float32 and images[0].max().item() == 1.0
    assert targets[0]["labels"].tolist() == [1]  # class 0 of bof is class 1 of torchvision (0: background)
    assert targets[0]["boxes"].tolist() == [[1.0, 1.0, 3.0, 4.0]] and type(targets[0]["boxes"]) is torch.Tensor
    assert targets[0]["weights"].tolist() == pytest.approx([0.4]) and set(targets[0]) == {"boxes", "labels", "weights"}


def test_a_box_predictor_replaced_after_conversion_still_gives_the_weighted_loss():
    """torchvision's fine-tuning recipe replaces roi_heads.box_predictor after building the model."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    stock, converted = faster_rcnn(), weighted_losses(faster_rcnn())
    torch.manual_seed(1)
    stock.roi_heads.box_predictor = FastRCNNPredictor(1024, 4)
    converted.roi_heads.box_predictor = copy.deepcopy(stock.roi_heads.box_predictor)
    images, targets = images_and_targets([[1.0, 1.0], [1.0]])
    expected, got = losses_of(stock, images, targets), losses_of(converted, images, targets)
    assert got["loss_classifier"] == pytest.approx(expected["loss_classifier"], rel=1e-6)
    # the replacement is hooked, and nothing of the batch stays on the modules
    assert len(converted.roi_heads.box_predictor._forward_hooks) == 1
    assert converted.roi_heads.box_predictor.kept_outputs is None and converted.roi_heads._sampled is None


def test_a_refused_model_is_left_as_it_was():
    model = faster_rcnn()

    class MyHeads(type(model.roi_heads)):
        pass

    model.roi_heads.__class__ = MyHeads
    with pytest.raises(TypeError, match="roi_heads is a MyHeads"):
        weighted_losses(model)
    assert type(model.rpn).__name__ == "RegionProposalNetwork" and not hasattr(model, "honours_box_weights")


def test_weighted_mixup_accepts_a_converted_model_inside_distributed_data_parallels_wrapper():
    from bof.tricks.mixup import DetectionMixup, check_reads_weights

    class Wrapped(torch.nn.Module):  # DistributedDataParallel and DataParallel hold the model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    check_reads_weights(DetectionMixup(mode="beta"), Wrapped(weighted_losses(faster_rcnn())))
    with pytest.raises(ValueError, match="FasterRCNN does not read the weights"):
        check_reads_weights(DetectionMixup(mode="beta"), Wrapped(faster_rcnn()))
