"""Pascal VOC detection AP, with the official devkit's semantics (VOCevaldet.m, VOCdevkit 2007/2012).

Everything here works in the VOC frame: 1-based, inclusive pixel coordinates, so widths
and areas carry the devkit's ``+ 1``. The rules, per class:

* detections are taken in descending score (ties in input order, as MATLAB's stable sort);
* each detection is compared with *all* ground truths of its class in its image and
  takes the one of highest IoU; it matches if that IoU is ``>= 0.5``;
* a match to a ``difficult`` box is ignored (neither TP nor FP); a match to a box
  already matched is a FP (no fall-back to the next-best box); no match is a FP;
* recall is over the non-difficult boxes; AP is 11-point interpolated (VOC2007) or the
  area under the monotone precision envelope (VOC2010+);
* mAP is the mean over classes that have at least one non-difficult box.

The 11 thresholds are the devkit's ``t=0:0.1:1``, which MATLAB's colon operator builds as
``0 + k*0.1`` for the first half and ``1 - (10-k)*0.1`` for the second: the 4th threshold
is 0.30000000000000004 (a recall of exactly 0.3 does not reach it) while 0.6 and 0.7 are
exact. ``metric="voc07"`` follows MATLAB; ``metric="voc07-gluoncv"`` uses the authors'
GluonCV thresholds (``VOC07MApMetric``: ``np.arange(0., 1.1, 0.1)``, which also misses 0.6
and 0.7 by one ulp), the variant the paper's numbers were computed with.

Because a detection's best ground truth does not depend on earlier matches, the greedy
matching is computed for all detections of a class at once (first detection in score
order per ground truth wins) instead of in a Python loop.

py-faster-rcnn's ``voc_eval.py`` requires IoU ``> 0.5``; the devkit (and this module)
``>= 0.5``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Metric = Literal["voc07", "voc07-gluoncv", "area"]
METRICS: tuple[str, ...] = ("voc07", "voc07-gluoncv", "area")
# MATLAB's colon operator: t(k) = a + k*d for k <= n/2, b - (n-k)*d above (VOCevaldet.m's 0:0.1:1)
MATLAB_ELEVEN_POINTS = tuple([0.0 + k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)])
GLUONCV_ELEVEN_POINTS = tuple(float(t) for t in np.arange(0.0, 1.1, 0.1))
_CHUNK = 16384


@dataclass
class ClassDetections:
    """All detections of one class: ``image_ids`` [D] (str), ``scores`` [D], ``boxes`` [D, 4] VOC frame."""

    image_ids: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


@dataclass(frozen=True)
class ImageGroundTruth:
    """One image's boxes (VOC frame, [G, 4]), their 0-based labels [G] and difficult flags [G]."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass(frozen=True)
class ClassResult:
    ap: float  # NaN when the class has no non-difficult box
    num_positives: int
    num_detections: int
    recall: np.ndarray  # [D] after each detection in score order
    precision: np.ndarray  # [D]


def voc_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU [N, M] of VOC-frame boxes [N, 4] and [M, 4], with the devkit's inclusive ``+ 1``."""
    return _iou_with_candidates(boxes, np.broadcast_to(others[None], (len(boxes), len(others), 4)))


def _iou_with_candidates(boxes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """IoU of each box [D, 4] with its own candidates [D, G, 4] -> [D, G] (devkit ``+ 1``)."""
    ix0 = np.maximum(boxes[:, None, 0], candidates[..., 0])
    iy0 = np.maximum(boxes[:, None, 1], candidates[..., 1])
    ix1 = np.minimum(boxes[:, None, 2], candidates[..., 2])
    iy1 = np.minimum(boxes[:, None, 3], candidates[..., 3])
    inter_w, inter_h = ix1 - ix0 + 1, iy1 - iy0 + 1
    overlapping = (inter_w > 0) & (inter_h > 0)
    inter = np.where(overlapping, inter_w * inter_h, 0.0)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_candidates = (candidates[..., 2] - candidates[..., 0] + 1) * (candidates[..., 3] - candidates[..., 1] + 1)
    union = area[:, None] + area_candidates - inter
    return np.where(overlapping, inter / np.where(overlapping, union, 1.0), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray, metric: Metric) -> float:
    """AP from the recall/precision curve: ``voc07`` / ``voc07-gluoncv`` (11 points) or ``area``."""
    if metric in ("voc07", "voc07-gluoncv"):
        total = 0.0
        for threshold in MATLAB_ELEVEN_POINTS if metric == "voc07" else GLUONCV_ELEVEN_POINTS:
            reached = precision[recall >= threshold]
            total += reached.max() if reached.size else 0.0
        return total / 11
    if metric != "area":
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    recall_points = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.nonzero(recall_points[1:] != recall_points[:-1])[0]
    return float(np.sum((recall_points[steps + 1] - recall_points[steps]) * envelope[steps + 1]))


def evaluate_class(
    detections: ClassDetections,
    ground_truth: Mapping[str, ImageGroundTruth],
    label: int,
    *,
    metric: Metric = "voc07",
    iou_threshold: float = 0.5,
) -> ClassResult:
    """Score one class. Every detection's image id must be a key of ``ground_truth``."""
    image_index = {image_id: index for index, image_id in enumerate(ground_truth)}
    gt_boxes, gt_image, gt_difficult = [], [], []
    for image_id, truth in ground_truth.items():
        mine = truth.labels == label
        gt_boxes.append(truth.boxes[mine])
        gt_image.append(np.full(int(mine.sum()), image_index[image_id]))
        gt_difficult.append(truth.difficult[mine])
    gt_boxes = np.concatenate(gt_boxes).reshape(-1, 4).astype(np.float64)
    gt_image = np.concatenate(gt_image).astype(np.int64)
    gt_difficult = np.concatenate(gt_difficult).astype(bool)
    num_positives = int((~gt_difficult).sum())

    order = np.argsort(-detections.scores, kind="stable")
    det_boxes = detections.boxes[order].astype(np.float64).reshape(-1, 4)
    det_image = np.array([image_index[detections.image_ids[i]] for i in order], dtype=np.int64)
    best_gt, best_iou = _best_ground_truth(det_boxes, det_image, gt_boxes, gt_image)

    matched = best_iou >= iou_threshold
    # (a class with no ground truth in the whole set matches nothing: nothing to look up)
    ignored = matched & gt_difficult[np.maximum(best_gt, 0)] if len(gt_difficult) else np.zeros_like(matched)
    candidate = matched & ~ignored
    true_positive = np.zeros(len(order), dtype=bool)
    _, first = np.unique(best_gt[candidate], return_index=True)
    true_positive[np.nonzero(candidate)[0][first]] = True
    false_positive = ~true_positive & ~ignored

    tp_cumulative = np.cumsum(true_positive).astype(np.float64)
    fp_cumulative = np.cumsum(false_positive).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp_cumulative / num_positives
    precision = tp_cumulative / np.maximum(tp_cumulative + fp_cumulative, np.finfo(np.float64).eps)
    ap = average_precision(recall, precision, metric) if num_positives > 0 else float("nan")
    return ClassResult(ap, num_positives, len(order), recall, precision)


def _best_ground_truth(
    det_boxes: np.ndarray, det_image: np.ndarray, gt_boxes: np.ndarray, gt_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the index of the highest-IoU ground truth in its image and that IoU
    (-1 and -inf where the image has none). Ground truths are padded per image to [I, Gmax, 4]."""
    best_gt = np.full(len(det_boxes), -1, dtype=np.int64)
    best_iou = np.full(len(det_boxes), -np.inf)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return best_gt, best_iou
    by_image = np.argsort(gt_image, kind="stable")
    counts = np.bincount(gt_image, minlength=int(max(gt_image.max(), det_image.max())) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(by_image)) - starts[gt_image[by_image]]
    padded_index = np.full((len(counts), counts.max()), -1, dtype=np.int64)
    padded_index[gt_image[by_image], slot] = by_image
    for start in range(0, len(det_boxes), _CHUNK):  # bounds memory at _CHUNK * Gmax boxes
        chunk = slice(start, start + _CHUNK)
        candidates = padded_index[det_image[chunk]]  # [d, Gmax]
        valid = candidates >= 0
        ious = _iou_with_candidates(det_boxes[chunk], gt_boxes[np.maximum(candidates, 0)])
        ious = np.where(valid, ious, -np.inf)
        column = np.argmax(ious, axis=1)  # the first maximum, as MATLAB's max
        rows = np.arange(len(candidates))
        has_gt = valid.any(axis=1)
        best_gt[chunk] = np.where(has_gt, candidates[rows, column], -1)
        best_iou[chunk] = np.where(has_gt, ious[rows, column], -np.inf)
    return best_gt, best_iou


def evaluate_voc(
    detections: Mapping[str, ClassDetections],
    ground_truth: Mapping[str, ImageGroundTruth],
    classes: Sequence[str],
    *,
    metric: Metric = "voc07",
    iou_threshold: float = 0.5,
) -> dict:
    """mAP and per-class AP. ``detections`` maps class name -> its detections (a missing
    class has none). Returns a JSON-ready dict; classes without positives have AP ``None``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    per_class, positives, counts = {}, {}, {}
    for label, name in enumerate(classes):
        result = evaluate_class(
            detections.get(name, ClassDetections()), ground_truth, label, metric=metric, iou_threshold=iou_threshold
        )
        per_class[name] = None if np.isnan(result.ap) else float(result.ap)
        positives[name] = result.num_positives
        counts[name] = result.num_detections
    scored = [ap for ap in per_class.values() if ap is not None]
    return {
        "mAP": float(np.mean(scored)) if scored else None,
        "per_class": per_class,
        "num_positives": positives,
        "num_detections": counts,
        "metric": metric,
        "iou_threshold": iou_threshold,
    }
