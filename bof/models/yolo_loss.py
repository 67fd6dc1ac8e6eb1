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
from torch.nn.utils.rnn import pad_sequence
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

    Nothing here waits for the GPU: every box is carried through every level with a mask
    (no ``nonzero``, ``unique`` or ``.item()``), so a step queues its kernels without a sync.

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
    assigned = _assign(gt, anchors, predictions, input_size)
    class_target = torch.zeros(len(gt["labels"]), num_classes, device=device)
    class_target.scatter_(1, gt["labels"][:, None], 1.0)  # F.one_hot would check the labels' range: a sync
    if label_smoothing > 0:
        class_target = smooth_sigmoid_targets(class_target, label_smoothing)

    loss_obj = loss_center = loss_scale = loss_class = torch.zeros((), device=device)
    for level, prediction in enumerate(predictions):
        level_anchors = anchors[level * per_level : (level + 1) * per_level]
        mine = assigned["positive"] & (assigned["level"] == level)
        # boxes of other levels point at some cell of this grid, where they are masked out
        row = assigned["row"].clamp(max=prediction.shape[-2] - 1)
        column = assigned["column"].clamp(max=prediction.shape[-1] - 1)
        cell = (assigned["anchor"], row, column)
        loss_obj = loss_obj + _objectness(prediction, gt, mine, cell, level_anchors, input_size, ignore_iou)
        values = prediction[gt["image"], assigned["anchor"], :, row, column]  # [N, 5 + K]
        center, scale, classes = _positive_terms(values, gt["weights"], assigned, class_target, mine)
        loss_center, loss_scale, loss_class = loss_center + center, loss_scale + scale, loss_class + classes
    return {
        "loss_objectness": loss_obj / batch,
        "loss_center": loss_center / batch,
        "loss_scale": loss_scale / batch,
        "loss_class": loss_class / batch,
    }


def _objectness(
    prediction: torch.Tensor,
    gt: dict[str, torch.Tensor],
    mine: torch.Tensor,
    cell: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    anchors: torch.Tensor,
    input_size: int,
    ignore_iou: float,
) -> torch.Tensor:
    """One level's objectness BCE, summed: 1 at the positives ``mine`` (their (anchor, row,
    column) ``cell``), 0 elsewhere but where a prediction already overlaps a box of its image by
    more than ``ignore_iou``."""
    batch, per_level, _, height, width = prediction.shape
    cells = batch * per_level * height * width
    # one spare cell at the end: boxes of other levels and overridden boxes write there
    obj_target = torch.zeros(cells + 1, device=prediction.device)
    obj_weight = torch.ones(cells + 1, device=prediction.device)
    if len(gt["boxes"]):
        # each prediction against its own image's boxes (padding: IoU 0); one box_iou per
        # image: on a CPU torchvision's batched form is 2x slower at 416 px, 30 boxes an image
        with torch.no_grad():
            decoded = decode(prediction.detach(), anchors, input_size / height).reshape(batch, -1, 4)
            best = [
                box_iou(decoded[b], gt["padded_boxes"][b]).masked_fill_(~gt["padded_valid"][b], 0.0).max(1).values
                for b in range(batch)
            ]
            obj_weight[:cells].masked_fill_(torch.cat(best) > ignore_iou, 0.0)
    anchor, row, column = cell
    slot = torch.where(mine, ((gt["image"] * per_level + anchor) * height + row) * width + column, cells)
    obj_target[slot] = 1.0
    obj_weight[slot] = gt["weights"]
    return F.binary_cross_entropy_with_logits(
        prediction[:, :, 4],
        obj_target[:cells].view(batch, per_level, height, width),
        weight=obj_weight[:cells].view(batch, per_level, height, width),
        reduction="sum",
    )


def _positive_terms(
    values: torch.Tensor, weight: torch.Tensor, assigned: dict[str, torch.Tensor], class_target: torch.Tensor, mine
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre, scale and class terms, summed over the positives ``mine`` of every box's cell
    ``values`` [N, 5 + K] at this level; the others are masked out, not weighted by 0 (an overflowed value
    there would make 0 * inf = NaN)."""
    box_weight = (weight * assigned["box_weight"])[:, None]
    center = F.binary_cross_entropy_with_logits(
        values[:, :2], assigned["center"], weight=box_weight.expand(-1, 2), reduction="none"
    )
    scale = box_weight * (values[:, 2:4] - assigned["scale"]).abs()
    classes = F.binary_cross_entropy_with_logits(
        values[:, 5:], class_target, weight=weight[:, None].expand_as(class_target), reduction="none"
    )
    keep = mine[:, None]
    return tuple(torch.where(keep, term, 0.0).sum() for term in (center, scale, classes))


def _gather_targets(targets: Sequence[dict], device) -> dict[str, torch.Tensor]:
    """The batch's boxes in one set, with the index of their image, and per image padded to the
    most boxes of an image (for the ignore rule); made where the boxes are, sizes known without
    reading a value."""
    boxes, labels, weights, image, valid = [], [], [], [], []
    for index, target in enumerate(targets):
        count = len(target["labels"])
        boxes.append(target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4).to(device))
        labels.append(target["labels"].long().to(device))
        weights.append(
            target["weights"].float().to(device) if "weights" in target else torch.ones(count, device=device)
        )
        image.append(torch.full((count,), index, dtype=torch.long, device=device))
        valid.append(torch.ones(count, dtype=torch.bool, device=device))
    return {
        "boxes": torch.cat(boxes),
        "labels": torch.cat(labels),
        "weights": torch.cat(weights),
        "image": torch.cat(image),
        "padded_boxes": pad_sequence(boxes, batch_first=True),
        "padded_valid": pad_sequence(valid, batch_first=True),
    }


def _assign(
    gt: dict[str, torch.Tensor], anchors: torch.Tensor, predictions: Sequence[torch.Tensor], input_size: int
) -> dict[str, torch.Tensor]:
    """Per box: its level, anchor and cell (row, column in its level's grid), whether it is a
    positive, and its targets there (centre in the cell, log scale to the anchor, box weight).

    When two boxes land on the same anchor and cell, the later one wins, as when the
    reference writes its targets one box after another: the earlier one is no positive.
    """
    per_level = predictions[0].shape[1]
    boxes = gt["boxes"]
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    anchors = anchors.to(boxes.device)
    best = shape_iou(wh, anchors).argmax(dim=1) if len(boxes) else gt["labels"].new_zeros(0)
    level, anchor = best // per_level, best % per_level
    # each box's cell (row, column) in its level's grid, and the cell's index among all levels' cells
    row = column = key = torch.zeros_like(best)
    stride = torch.ones_like(wh[:, 0])
    offset = 0
    for index, prediction in enumerate(predictions):
        height, width = prediction.shape[-2:]
        here, level_stride = level == index, input_size / height
        stride = torch.where(here, level_stride, stride)
        row_here = (centre[:, 1] / level_stride).floor().long().clamp(0, height - 1)
        column_here = (centre[:, 0] / level_stride).floor().long().clamp(0, width - 1)
        row, column = torch.where(here, row_here, row), torch.where(here, column_here, column)
        key_here = offset + ((gt["image"] * per_level + anchor) * height + row_here) * width + column_here
        key = torch.where(here, key_here, key)
        offset += len(predictions[0]) * per_level * height * width
    order = torch.arange(len(key), device=key.device)
    last = torch.full((offset,), -1, dtype=torch.long, device=key.device)
    last.scatter_reduce_(0, key, order, reduce="amax")
    return {
        "level": level,
        "anchor": anchor,
        "row": row,
        "column": column,
        "positive": last[key] == order,
        "center": centre / stride[:, None] - torch.stack([column, row], dim=1).float(),
        "scale": torch.log(wh / anchors[best]),
        "box_weight": 2.0 - wh.prod(dim=1) / (input_size * input_size),
    }
