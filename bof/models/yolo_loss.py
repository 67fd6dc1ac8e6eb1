"""YOLOv3 targets and loss, as the authors' GluonCV code computes them [16].

Per ground truth: the best of the 9 anchors by *shape-only* IoU (boxes compared as if
centred together) fixes the output scale and anchor; the cell holding the box centre is
its positive. Terms (each summed over the image, then averaged over the batch):

* objectness: BCE against 1 at positives and 0 elsewhere, except that a non-positive
  prediction whose decoded box has IoU > ``ignore_iou`` (0.7) with some ground truth is
  ignored;
* centre: BCE of the sigmoid offsets against the centre's position in its cell;
* scale: L1 of ``(tw, th)`` against ``log(w / anchor_w), log(h / anchor_h)``;
  centre and scale are weighted by ``2 - w h / (W H)`` (small boxes count more);
* class: BCE against the (optionally smoothed, §3.2) one-hot class target at positives.

A box's mixup weight (§3.1) multiplies all of its positive terms. Shapes: predictions of
level l are ``[B, A, 5 + K, H_l, W_l]`` with channels (tx, ty, tw, th, objectness, classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from bof.tricks.label_smoothing import smooth_sigmoid_targets


def shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU [N, M] of boxes [N, 2] and anchors [M, 2] given as (w, h), centred together."""
    inter = torch.minimum(wh[:, None, 0], anchors[None, :, 0]) * torch.minimum(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, None].prod(-1) + anchors[None].prod(-1) - inter)


def decode(prediction: torch.Tensor, anchors: torch.Tensor, stride: float) -> torch.Tensor:
    """XYXY boxes [B, A, H, W, 4] in input pixels from one level's raw output [B, A, 5 + K, H, W];
    ``anchors`` [A, 2] in pixels."""
    height, width = prediction.shape[-2:]
    ys = torch.arange(height, device=prediction.device, dtype=prediction.dtype)
    xs = torch.arange(width, device=prediction.device, dtype=prediction.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    cx = (prediction[:, :, 0].sigmoid() + grid_x) * stride
    cy = (prediction[:, :, 1].sigmoid() + grid_y) * stride
    w = prediction[:, :, 2].clamp(max=10).exp() * anchors[None, :, 0, None, None]
    h = prediction[:, :, 3].clamp(max=10).exp() * anchors[None, :, 1, None, None]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def yolo_loss(
    predictions: Sequence[torch.Tensor],
    targets: Sequence[dict],
    anchors: torch.Tensor,
    input_size: int,
    *,
    label_smoothing: float = 0.0,
    ignore_iou: float = 0.7,
) -> dict[str, torch.Tensor]:
    """Named loss terms for a batch.

    Args:
        predictions: per level ``[B, A, 5 + K, H_l, W_l]``, strides 8, 16, 32.
        targets: per image ``boxes`` [N, 4] XYXY in input pixels, ``labels`` [N], and
            optionally ``weights`` [N] (mixup; 1 when absent).
        anchors: ``[levels * A, 2]`` (w, h) in input pixels, level-major.
        label_smoothing: sigmoid smoothing eps (0 = off).
    """
    predictions = [p.float() for p in predictions]
    device = predictions[0].device
    batch, per_level, channels = predictions[0].shape[:3]
    num_classes = channels - 5
    gt = _gather_targets(targets, device)
    positives = _assign(gt, anchors, predictions, input_size)

    loss_obj = loss_center = loss_scale = loss_class = torch.zeros((), device=device)
    for level, prediction in enumerate(predictions):
        height, width = prediction.shape[-2:]
        stride = input_size / height
        level_anchors = anchors[level * per_level : (level + 1) * per_level]
        obj_target = torch.zeros((batch, per_level, height, width), device=device)
        obj_weight = torch.ones_like(obj_target)
        if len(gt["boxes"]):
            with torch.no_grad():
                decoded = decode(prediction.detach(), level_anchors, stride).reshape(batch, -1, 4)
                best = torch.stack([_best_iou(decoded[b], gt["boxes"][gt["image"] == b]) for b in range(batch)])
                obj_weight[best.view_as(obj_weight) > ignore_iou] = 0.0

        at = positives[level]
        b, a, j, i = at["index"]
        obj_target[b, a, j, i] = 1.0
        obj_weight[b, a, j, i] = at["weight"]
        loss_obj = loss_obj + F.binary_cross_entropy_with_logits(
            prediction[:, :, 4], obj_target, weight=obj_weight, reduction="sum"
        )
        if len(b) == 0:
            continue
        cell = prediction[b, a, :, j, i]  # [P, 5 + K]
        box_weight = (at["weight"] * at["box_weight"])[:, None]
        loss_center = loss_center + F.binary_cross_entropy_with_logits(
            cell[:, :2], at["center"], weight=box_weight.expand(-1, 2), reduction="sum"
        )
        loss_scale = loss_scale + (box_weight * (cell[:, 2:4] - at["scale"]).abs()).sum()
        class_target = F.one_hot(at["label"], num_classes).float()
        if label_smoothing > 0:
            class_target = smooth_sigmoid_targets(class_target, label_smoothing)
        loss_class = loss_class + F.binary_cross_entropy_with_logits(
            cell[:, 5:], class_target, weight=at["weight"][:, None].expand(-1, num_classes), reduction="sum"
        )
    return {
        "loss_objectness": loss_obj / batch,
        "loss_center": loss_center / batch,
        "loss_scale": loss_scale / batch,
        "loss_class": loss_class / batch,
    }


def _best_iou(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    if len(gt_boxes) == 0:
        return torch.zeros(len(boxes), device=boxes.device)
    return box_iou(boxes, gt_boxes).max(dim=1).values


def _gather_targets(targets: Sequence[dict], device) -> dict[str, torch.Tensor]:
    boxes, labels, weights, image = [], [], [], []
    for index, target in enumerate(targets):
        count = len(target["labels"])
        boxes.append(target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4))
        labels.append(target["labels"])
        weights.append(target.get("weights", torch.ones(count)).float())
        image.append(torch.full((count,), index, dtype=torch.long))
    return {
        "boxes": torch.cat(boxes).to(device),
        "labels": torch.cat(labels).long().to(device),
        "weights": torch.cat(weights).to(device),
        "image": torch.cat(image).to(device),
    }


def _assign(
    gt: dict[str, torch.Tensor], anchors: torch.Tensor, predictions: Sequence[torch.Tensor], input_size: int
) -> list[dict]:
    """Per level: the positives' (batch, anchor, row, column) indices and their targets.

    When two boxes land on the same anchor and cell, the later one wins, as when the
    reference writes its targets one box after another.
    """
    per_level = predictions[0].shape[1]
    boxes = gt["boxes"]
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    best = (
        shape_iou(wh, anchors.to(boxes.device)).argmax(dim=1)
        if len(boxes)
        else torch.zeros(0, dtype=torch.long, device=boxes.device)
    )
    result = []
    for level, prediction in enumerate(predictions):
        height, width = prediction.shape[-2:]
        stride = input_size / height
        mine = torch.nonzero(best // per_level == level).flatten()
        anchor = best[mine] % per_level
        grid = centre[mine] / stride
        column = grid[:, 0].floor().long().clamp(0, width - 1)
        row = grid[:, 1].floor().long().clamp(0, height - 1)
        batch_index = gt["image"][mine]
        flat = ((batch_index * per_level + anchor) * height + row) * width + column
        keep = _last_occurrence(flat)
        mine, anchor, row, column, batch_index = mine[keep], anchor[keep], row[keep], column[keep], batch_index[keep]
        level_anchors = anchors[level * per_level : (level + 1) * per_level].to(boxes.device)
        result.append(
            {
                "index": (batch_index, anchor, row, column),
                "center": grid[keep] - torch.stack([column, row], dim=1).float(),
                "scale": torch.log(wh[mine] / level_anchors[anchor]),
                "box_weight": 2.0 - wh[mine].prod(dim=1) / (input_size * input_size),
                "weight": gt["weights"][mine],
                "label": gt["labels"][mine],
            }
        )
    return result


def _last_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Positions [U] of the last occurrence of each distinct key, in order of first appearance."""
    if len(keys) == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    order = torch.arange(len(keys), device=keys.device)
    last = torch.full((int(keys.max()) + 1,), -1, dtype=torch.long, device=keys.device)
    last.scatter_reduce_(0, keys, order, reduce="amax")
    return torch.unique(last[keys])
