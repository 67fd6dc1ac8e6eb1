"""Mixup's per-box weights and label smoothing in a torchvision detector's own losses (§3.1, §3.2).

A stock torchvision detector ignores ``target["weights"]``: a mixed image's faded boxes would
count as fully as the others. ``weighted_losses(model)`` changes, in place, the modules that
compute the losses so that every sampled anchor or proposal matched to a ground truth counts
its ``weights`` entry (background counts 1), and optionally smooths the class targets:

* Faster R-CNN (torchvision's ``GeneralizedRCNN`` with ``RegionProposalNetwork`` and a box-only
  ``RoIHeads``): the RPN's objectness and box terms, the RoI head's classification and box terms;
  label smoothing on the softmax over K + 1 classes (Eq. 3).
* RetinaNet (``RetinaNetHead``): the focal classification term and the box term; label smoothing
  narrows the sigmoid targets to [eps, 1 - eps] (as GluonCV's YOLOv3).

Only the modules' classes change (to subclasses that override the loss methods, as
``torch.distributed.fsdp.fully_shard`` swaps a module's class): parameters, state-dict keys,
attributes and every other setting stay. With every weight 1 and no smoothing the losses are
torchvision's. ``losses="gluoncv"`` gives the losses of the authors' GluonCV Faster R-CNN that the
paper's numbers come from instead: smooth-L1 with beta 1 in the RoI head (torchvision: 1/9) and
no RPN anchor that crosses the image border sampled (torchvision samples them).
"""

from __future__ import annotations

from typing import Literal

import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetRegressionHead,
)
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss
from torchvision.transforms.v2.functional import pil_to_tensor

from bof.tricks.augmentation import xyxy_boxes
from bof.tricks.label_smoothing import smooth_sigmoid_targets, smoothed_cross_entropy

__all__ = ["honours_box_weights", "torchvision_inputs", "weighted_losses"]

Losses = Literal["torchvision", "gluoncv"]


def matched_weights(matched_idxs: torch.Tensor, target: dict) -> torch.Tensor:
    """The ``weights`` entry of each anchor's or proposal's matched ground truth; 1 where it is
    unmatched (background, ignored) or the target has no ``weights``."""
    weights = target.get("weights")
    if weights is None or len(weights) == 0:
        return torch.ones(len(matched_idxs), device=matched_idxs.device)
    matched = weights.to(matched_idxs.device, torch.float32)[matched_idxs.clamp(min=0)]
    return torch.where(matched_idxs >= 0, matched, torch.ones_like(matched))


class WeightedRPN(RegionProposalNetwork):
    """torchvision's RPN whose objectness and box terms weight each sampled anchor by its ground
    truth's weight; with ``skip_border_anchors`` no anchor crossing the image border is sampled
    (GluonCV's ``RPNTargetSampler``, as the original Faster R-CNN [17])."""

    skip_border_anchors = False

    def forward(self, images, features, targets=None):
        self._image_sizes = images.image_sizes  # (h, w) of each resized image, before padding
        try:
            return super().forward(images, features, targets)
        finally:  # nothing of one batch stays on the module (pickled models, deep copies)
            self._image_sizes = self._anchor_weights = None

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched_gt_boxes, self._anchor_weights = [], [], []
        sizes = getattr(self, "_image_sizes", None) or [None] * len(anchors)
        for anchors_per_image, target, size in zip(anchors, targets, sizes, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                matched_gt_boxes.append(torch.zeros_like(anchors_per_image))
                labels_per_image = torch.zeros(len(anchors_per_image), device=anchors_per_image.device)
                weights = torch.ones(len(anchors_per_image), device=anchors_per_image.device)
            else:
                matched_idxs = self.proposal_matcher(self.box_similarity(gt_boxes, anchors_per_image))
                matched_gt_boxes.append(gt_boxes[matched_idxs.clamp(min=0)])
                labels_per_image = (matched_idxs >= 0).to(torch.float32)
                labels_per_image[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
                labels_per_image[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
                weights = matched_weights(matched_idxs, target)
            if self.skip_border_anchors and size is not None:
                height, width = size
                crosses = (
                    (anchors_per_image[:, 0] < 0)
                    | (anchors_per_image[:, 1] < 0)
                    | (anchors_per_image[:, 2] > width)
                    | (anchors_per_image[:, 3] > height)
                )
                labels_per_image[crosses] = -1.0
            labels.append(labels_per_image)
            self._anchor_weights.append(weights)
        return labels, matched_gt_boxes

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos))[0]
        sampled = torch.cat([sampled_pos, torch.where(torch.cat(sampled_neg))[0]])
        weights = torch.cat(self._anchor_weights)
        objectness = objectness.flatten()
        labels = torch.cat(labels)
        regression_targets = torch.cat(regression_targets)
        box_loss = (
            F.smooth_l1_loss(
                pred_bbox_deltas[sampled_pos], regression_targets[sampled_pos], beta=1 / 9, reduction="none"
            ).sum(1)
            * weights[sampled_pos]
        ).sum() / max(sampled.numel(), 1)
        objectness_loss = (
            F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled], reduction="none")
            * weights[sampled]
        ).mean()
        return objectness_loss, box_loss


def keep_outputs(module: nn.Module, inputs, outputs) -> None:
    """Forward hook on a box predictor: its outputs, kept on the predictor itself (each replica
    of ``nn.DataParallel`` keeps its own) for the weighted loss."""
    if module.training:
        module.kept_outputs = outputs


class WeightedRoIHeads(RoIHeads):
    """torchvision's box-only RoI heads whose classification (cross-entropy smoothed by
    ``label_smoothing``) and box terms weight each sampled proposal by its ground truth's weight
    (background 1). ``box_beta``: smooth-L1's beta (torchvision 1/9, GluonCV 1)."""

    label_smoothing = 0.0
    box_beta = 1 / 9

    def select_training_samples(self, proposals, targets):
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(proposals, targets)
        # torchvision clamps the matched indices of background proposals to 0, so only the
        # labels tell foreground (> 0) from background (0): background weighs 1.
        self._sampled = (
            torch.cat(
                [
                    torch.where(label > 0, matched_weights(matched.clamp(min=0), target), 1.0)
                    for matched, label, target in zip(matched_idxs, labels, targets, strict=True)
                ]
            ),
            torch.cat(labels),
            torch.cat(regression_targets),
        )
        return proposals, matched_idxs, labels, regression_targets

    def forward(self, features, proposals, image_shapes, targets=None):
        predictor = self.box_predictor  # replaced after conversion (fine-tuning recipes do): hook it too
        if self.training and keep_outputs not in predictor._forward_hooks.values():
            predictor.register_forward_hook(keep_outputs)
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
            if self.training:
                losses = {**losses, **self.box_loss(*predictor.kept_outputs, *self._sampled)}
            return result, losses
        finally:  # nothing of one batch stays on the modules
            self._sampled = None
            predictor.kept_outputs = None

    def box_loss(self, class_logits, box_regression, weights, labels, regression_targets) -> dict[str, torch.Tensor]:
        """torchvision's ``fastrcnn_loss`` with per-sample weights and label smoothing: smooth L1
        summed over the positives' class-specific coordinates and divided by the sampled RoIs."""
        positive = torch.where(labels > 0)[0]
        box_regression = box_regression.reshape(len(labels), box_regression.size(-1) // 4, 4)
        box = F.smooth_l1_loss(
            box_regression[positive, labels[positive]],
            regression_targets[positive],
            beta=self.box_beta,
            reduction="none",
        )
        return {
            "loss_classifier": smoothed_cross_entropy(class_logits, labels, self.label_smoothing, weights),
            "loss_box_reg": (box.sum(1) * weights[positive]).sum() / max(labels.numel(), 1),
        }


class WeightedRetinaNetClassificationHead(RetinaNetClassificationHead):
    """RetinaNet's focal loss with each anchor's term weighted by its ground truth's weight
    (background 1) and, with ``label_smoothing`` eps, the sigmoid targets of the anchors matched to a
    box narrowed to [eps, 1 - eps] (background anchors keep 0: smoothing them would put a floor of
    every anchor times every class under a loss divided by the foreground anchors)."""

    label_smoothing = 0.0

    def compute_loss(self, targets, head_outputs, matched_idxs):
        losses = []
        for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs, strict=True):
            foreground = matched >= 0
            classes = torch.zeros_like(logits)
            classes[foreground, target["labels"][matched[foreground]]] = 1.0
            if self.label_smoothing:  # the anchors matched to a box only (GluonCV's YOLOv3: class loss on positives)
                classes[foreground] = smooth_sigmoid_targets(classes[foreground], self.label_smoothing)
            valid = matched != self.BETWEEN_THRESHOLDS
            terms = sigmoid_focal_loss(logits[valid], classes[valid], reduction="none").sum(1)
            weighted = (terms * matched_weights(matched[valid], target)).sum()
            losses.append(weighted / max(1, foreground.sum()))
        return sum(losses) / len(targets)


class WeightedRetinaNetRegressionHead(RetinaNetRegressionHead):
    """RetinaNet's box loss (any of torchvision's ``_loss_type``) with each foreground anchor's
    term weighted by its ground truth's weight."""

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        losses = []
        for target, regression, anchors_per_image, matched in zip(
            targets, head_outputs["bbox_regression"], anchors, matched_idxs, strict=True
        ):
            foreground = torch.where(matched >= 0)[0]
            boxes = target["boxes"][matched[foreground]]
            terms = self.box_terms(anchors_per_image[foreground], boxes, regression[foreground])
            weighted = (terms * matched_weights(matched[foreground], target)).sum()
            losses.append(weighted / max(1, foreground.numel()))
        return sum(losses) / max(1, len(targets))

    def box_terms(self, anchors: torch.Tensor, boxes: torch.Tensor, regression: torch.Tensor) -> torch.Tensor:
        """torchvision's ``_box_loss`` of each anchor (not summed): [N]."""
        if self._loss_type in ("l1", "smooth_l1"):
            encoded = self.box_coder.encode_single(boxes, anchors)
            if self._loss_type == "l1":
                return F.l1_loss(regression, encoded, reduction="none").sum(1)
            return F.smooth_l1_loss(regression, encoded, reduction="none", beta=1.0).sum(1)
        decoded = self.box_coder.decode_single(regression, anchors)
        loss = {"ciou": complete_box_iou_loss, "diou": distance_box_iou_loss, "giou": generalized_box_iou_loss}
        return loss[self._loss_type](decoded, boxes, reduction="none", eps=1e-7)


def _check_class(module: nn.Module, base: type, weighted: type, where: str) -> None:
    if type(module) not in (base, weighted):
        raise TypeError(
            f"{where} is a {type(module).__name__}, not torchvision's {base.__name__}: its losses cannot "
            f"take per-box weights here (weighted_losses converts torchvision's own classes)"
        )


def weighted_losses(model: nn.Module, *, label_smoothing: float = 0.0, losses: Losses = "torchvision") -> nn.Module:
    """``model`` (a torchvision Faster R-CNN or RetinaNet), changed in place so that its losses honour
    ``target["weights"]`` (one per box; mixup's) and smooth the class targets by ``label_smoothing``;
    returned for chaining. ``losses="gluoncv"`` (Faster R-CNN only) takes GluonCV's box beta and
    border rule instead of torchvision's. Any other detector raises ``TypeError`` (nothing changed).
    The converted model does not script with ``torch.jit`` (train with it, deploy the same weights in
    a stock model: the state dict is torchvision's)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if losses not in ("torchvision", "gluoncv"):
        raise ValueError(f"losses must be 'torchvision' or 'gluoncv', got {losses!r}")
    name = type(model).__name__
    if isinstance(model, GeneralizedRCNN):
        heads = model.roi_heads
        if isinstance(heads, RoIHeads) and (heads.has_mask() or heads.has_keypoint()):
            raise TypeError(f"{name} has mask or keypoint heads, whose losses cannot take per-box weights here")
        conversions = [
            (model.rpn, RegionProposalNetwork, WeightedRPN, f"{name}.rpn"),
            (heads, RoIHeads, WeightedRoIHeads, f"{name}.roi_heads"),
        ]
    elif isinstance(model, RetinaNet):
        if losses != "torchvision":
            raise ValueError(f"losses={losses!r} is Faster R-CNN's (GluonCV's); {name} has torchvision's only")
        head = model.head
        conversions = [
            (head.classification_head, RetinaNetClassificationHead, WeightedRetinaNetClassificationHead,
             f"{name}.head.classification_head"),
            (head.regression_head, RetinaNetRegressionHead, WeightedRetinaNetRegressionHead,
             f"{name}.head.regression_head"),
        ]  # fmt: skip
    else:
        raise TypeError(
            f"{name} is not a torchvision Faster R-CNN or RetinaNet: its losses cannot take per-box weights "
            f"(bof's YOLOv3 takes them itself)"
        )
    for module, base, weighted, where in conversions:  # every module checked before any changes
        _check_class(module, base, weighted, where)
    for module, _, weighted, _ in conversions:
        module.__class__ = weighted
    if isinstance(model, GeneralizedRCNN):
        model.rpn.skip_border_anchors = losses == "gluoncv"
        model.roi_heads.box_beta = 1.0 if losses == "gluoncv" else 1 / 9
        model.roi_heads.label_smoothing = label_smoothing  # (its box predictor is hooked at the first training forward)
    else:
        model.head.classification_head.label_smoothing = label_smoothing
    model.honours_box_weights = True  # what weighted mixup asks of the detector (bof.tricks.mixup)
    return model


def honours_box_weights(model: nn.Module) -> bool:
    """Whether ``model``'s losses read ``target["weights"]``: its loss modules converted by
    `weighted_losses`, or a detector of bof's that declares ``honours_box_weights = True``."""
    if isinstance(model, GeneralizedRCNN):
        return isinstance(model.rpn, WeightedRPN) and isinstance(model.roi_heads, WeightedRoIHeads)
    if isinstance(model, RetinaNet):
        head = model.head
        return isinstance(head.classification_head, WeightedRetinaNetClassificationHead) and isinstance(
            head.regression_head, WeightedRetinaNetRegressionHead
        )
    return getattr(model, "honours_box_weights", False)


def torchvision_inputs(images, targets) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A batch of bof samples as a torchvision detector takes it: float images in [0, 1] (uint8 and PIL
    divided by 255), XYXY boxes, labels shifted past torchvision's background class 0, ``weights``
    kept. An image's ``loss_weight`` (mixup's ``loss_scale``) is the loop's to apply to its loss."""
    inputs, converted = [], []
    for image, target in zip(images, targets, strict=True):
        image = pil_to_tensor(image) if isinstance(image, PIL.Image.Image) else image.as_subclass(torch.Tensor)
        inputs.append(image.float().div(255) if image.dtype == torch.uint8 else image.float())
        boxes = target["boxes"]
        if isinstance(boxes, tv_tensors.BoundingBoxes):
            boxes = xyxy_boxes(boxes)
        converted.append(
            {
                "boxes": boxes.as_subclass(torch.Tensor).float(),
                "labels": target["labels"].long() + 1,
                **({"weights": target["weights"]} if "weights" in target else {}),
            }
        )
    return inputs, converted
