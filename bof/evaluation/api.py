"""In-memory evaluation for the training engine, with the same semantics as ``bof evaluate``.

A prediction is one image's detections as torchvision detection models return them, plus
the image id: ``{"image_id", "boxes": [N, 4] XYXY pixel-edge frame, "scores": [N],
"labels": [N] (0-based class index)}``; arrays or CPU tensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

from bof.data.detection import DetectionDataset
from bof.errors import DatasetError
from bof.evaluation.coco import Backend, evaluate_coco
from bof.evaluation.voc import ClassDetections, ImageGroundTruth, Metric, evaluate_voc

Prediction = Mapping[str, object]


def to_voc_frame(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Pixel-edge ``[x0, y0, x1, y1)`` -> VOC's 1-based inclusive ``(x0 + 1, y0 + 1, x1, y1)``."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, :2] += 1
    return boxes


def voc_ground_truth(dataset: DetectionDataset) -> dict[str, ImageGroundTruth]:
    return {
        str(sample.image_id): ImageGroundTruth(to_voc_frame(sample.boxes_xyxy), sample.labels, sample.difficult)
        for sample in dataset.samples
    }


def _arrays(prediction: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(prediction["scores"], dtype=np.float64).reshape(-1)
    labels = np.asarray(prediction["labels"], dtype=np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise DatasetError(
            "predictions", f"image {prediction['image_id']!r}: boxes, scores and labels differ in length"
        )
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    if not (finite & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])).all():
        raise DatasetError("predictions", f"image {prediction['image_id']!r}: inverted or non-finite box or score")
    return boxes, scores, labels


def voc_detections(
    predictions: Iterable[Prediction], classes: list[str], image_ids: set[str]
) -> dict[str, ClassDetections]:
    """Group per-image predictions by class, in the VOC frame."""
    ids, scores, boxes, labels = [], [], [], []
    for prediction in predictions:
        image_id = str(prediction["image_id"])
        if image_id not in image_ids:
            raise DatasetError("predictions", f"unknown image id {image_id!r} (not in the evaluated dataset)")
        image_boxes, image_scores, image_labels = _arrays(prediction)
        if len(image_labels) and (image_labels.min() < 0 or image_labels.max() >= len(classes)):
            raise DatasetError("predictions", f"image {image_id!r}: label outside 0..{len(classes) - 1}")
        ids += [image_id] * len(image_scores)
        scores.append(image_scores)
        boxes.append(to_voc_frame(image_boxes))
        labels.append(image_labels)
    ids_array = np.array(ids, dtype=object)
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    labels_all = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return {
        name: ClassDetections(
            list(ids_array[labels_all == label]), scores_all[labels_all == label], boxes_all[labels_all == label]
        )
        for label, name in enumerate(classes)
    }


def evaluate_voc_predictions(
    predictions: Iterable[Prediction], dataset: DetectionDataset, *, metric: Metric = "voc07"
) -> dict:
    """VOC mAP@0.5 of predictions on a dataset (its ``difficult`` flags are honoured)."""
    ground_truth = voc_ground_truth(dataset)
    detections = voc_detections(predictions, dataset.classes, set(ground_truth))
    return evaluate_voc(detections, ground_truth, dataset.classes, metric=metric)


def coco_ground_truth(dataset: DetectionDataset) -> tuple[dict, dict, list[int]]:
    """(COCO JSON dict, dataset image id -> COCO image id, label -> category id)."""
    from bof.data.coco import CocoDetection, detection_to_coco

    if isinstance(dataset, CocoDetection):
        return dataset.coco.dataset, {s.image_id: s.image_id for s in dataset.samples}, list(dataset.category_ids)
    root = os.path.commonpath([sample.image_path.parent for sample in dataset.samples])
    data = detection_to_coco(dataset, image_root=root)
    id_map = {image["voc_id"]: image["id"] for image in data["images"]}
    return data, id_map, [category["id"] for category in data["categories"]]


def coco_results(predictions: Iterable[Prediction], id_map: Mapping, category_ids: list[int]) -> list[dict]:
    """Per-image predictions as a COCO results list (``bbox`` = ``[x, y, w, h]``)."""
    results = []
    for prediction in predictions:
        key = prediction["image_id"]
        if key not in id_map:
            raise DatasetError("predictions", f"unknown image id {key!r} (not in the evaluated dataset)")
        boxes, scores, labels = _arrays(prediction)
        for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            if not 0 <= label < len(category_ids):
                raise DatasetError("predictions", f"image {key!r}: label {label} outside 0..{len(category_ids) - 1}")
            results.append(
                {
                    "image_id": id_map[key],
                    "category_id": category_ids[label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": score,
                }
            )
    return results


def evaluate_coco_predictions(
    predictions: Iterable[Prediction], dataset: DetectionDataset, *, backend: Backend = "faster"
) -> dict:
    """COCO AP@[.5:.95] etc. of predictions on a dataset (VOC datasets are converted first)."""
    ground_truth, id_map, category_ids = coco_ground_truth(dataset)
    return evaluate_coco(ground_truth, coco_results(predictions, id_map, category_ids), backend=backend)
