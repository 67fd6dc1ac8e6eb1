"""Evaluation speed, measured side by side in one run.

COCO: our `evaluate_coco` (faster-coco-eval backend) against plain pycocotools COCOeval on a
5,000-image, 80-class set with 100 detections an image; the two must agree.
VOC: our devkit-exact evaluator on a VOC07-test-sized set (4,952 images, 20 classes,
100 detections an image), in memory and through the comp4 results files the CLI reads.

    python benchmarks/eval_speed.py [--images 5000] [--voc-images 4952]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import tempfile
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bof.evaluation.coco import STAT_NAMES, evaluate_coco
from bof.evaluation.formats import read_voc_results, write_voc_results
from bof.evaluation.voc import ClassDetections, ImageGroundTruth, evaluate_voc


def synthetic_set(rng, num_images, num_classes, dets_per_image, width=640, height=480):
    """Per image: 1-15 boxes (log-uniform sizes), ~80 % found again with noise, the rest of
    the detections background boxes. Returns (boxes [G, 4] XYXY, gt image, gt label,
    det boxes, det image, det label, det score)."""
    gt_boxes, gt_image, gt_label, det_boxes, det_image, det_label, det_score = ([] for _ in range(7))
    for image in range(num_images):
        count = int(rng.integers(1, 16))
        side = np.exp(rng.uniform(np.log(8), np.log(300), size=count))
        wh = side[:, None] * rng.uniform(0.6, 1.4, size=(count, 2))
        wh = np.minimum(wh, [width - 1, height - 1])
        xy = rng.uniform(0, 1, size=(count, 2)) * ([width, height] - wh)
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, num_classes, size=count)
        found = rng.random(count) < 0.8
        hits = boxes[found] + rng.normal(0, 0.08, size=(int(found.sum()), 4)) * np.repeat(wh[found], 2, axis=1)
        hits[:, 2:] = np.maximum(hits[:, 2:], hits[:, :2] + 1)
        misses = dets_per_image - len(hits)
        xy = rng.uniform(0, [width - 60, height - 60], size=(misses, 2))
        background = np.concatenate([xy, xy + rng.uniform(4, 60, size=(misses, 2))], axis=1)
        gt_boxes.append(boxes)
        gt_image.append(np.full(count, image))
        gt_label.append(labels)
        det_boxes += [hits, background]
        det_image.append(np.full(dets_per_image, image))
        det_label += [labels[found], rng.integers(0, num_classes, size=misses)]
        det_score += [rng.uniform(0.3, 1.0, size=len(hits)), rng.uniform(0.0, 0.7, size=misses)]
    return tuple(
        np.concatenate(part) for part in (gt_boxes, gt_image, gt_label, det_boxes, det_image, det_label, det_score)
    )


def coco_benchmark(num_images: int) -> None:
    rng = np.random.default_rng(0)
    gt_boxes, gt_image, gt_label, det_boxes, det_image, det_label, det_score = synthetic_set(rng, num_images, 80, 100)
    ground_truth = {
        "images": [{"id": int(i) + 1, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(num_images)],
        "categories": [{"id": c + 1, "name": f"class{c}"} for c in range(80)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": int(i) + 1,
                "category_id": int(c) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            for k, ((x0, y0, x1, y1), i, c) in enumerate(zip(gt_boxes.tolist(), gt_image, gt_label, strict=True))
        ],
    }
    results = [
        {"image_id": int(i) + 1, "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
        for (x0, y0, x1, y1), i, c, s in zip(det_boxes.tolist(), det_image, det_label, det_score, strict=True)
    ]
    print(f"COCO: {num_images} images, 80 classes, {len(ground_truth['annotations'])} boxes, {len(results)} detections")

    start = time.perf_counter()
    ours = evaluate_coco(ground_truth, results)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    reference_seconds = time.perf_counter() - start

    difference = max(abs(ours[name] - value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True))
    print(f"  bof evaluate_coco (faster-coco-eval): {ours_seconds:7.2f} s   AP {ours['AP']:.4f}")
    print(f"  pycocotools COCOeval:                 {reference_seconds:7.2f} s   AP {evaluator.stats[0]:.4f}")
    print(
        f"  speed-up {reference_seconds / ours_seconds:.1f}x, largest difference over the 12 numbers {difference:.1e}"
    )


def voc_benchmark(num_images: int) -> None:
    rng = np.random.default_rng(1)
    gt_boxes, gt_image, gt_label, det_boxes, det_image, det_label, det_score = synthetic_set(
        rng, num_images, 20, 100, 500, 375
    )
    difficult = rng.random(len(gt_boxes)) < 0.1
    to_voc = np.array([1, 1, 0, 0])
    ids = [f"{i:06d}" for i in range(num_images)]
    order = np.argsort(gt_image, kind="stable")
    starts = np.searchsorted(gt_image[order], np.arange(num_images + 1))
    ground_truth = {
        ids[i]: ImageGroundTruth(gt_boxes[order[a:b]] + to_voc, gt_label[order[a:b]], difficult[order[a:b]])
        for i, (a, b) in enumerate(zip(starts[:-1], starts[1:], strict=True))
    }
    classes = [f"class{c}" for c in range(20)]
    detections = {
        name: ClassDetections(
            [ids[i] for i in det_image[det_label == c]], det_score[det_label == c], det_boxes[det_label == c] + to_voc
        )
        for c, name in enumerate(classes)
    }
    print(f"VOC: {num_images} images, 20 classes, {len(gt_boxes)} boxes, {len(det_boxes)} detections")
    for metric in ("voc07", "area"):
        start = time.perf_counter()
        report = evaluate_voc(detections, ground_truth, classes, metric=metric)
        print(f"  in memory, {metric:<5}: {time.perf_counter() - start:6.2f} s   mAP {report['mAP']:.4f}")
    with tempfile.TemporaryDirectory() as folder:
        write_voc_results(folder, "test", detections, classes)
        start = time.perf_counter()
        read_back = read_voc_results(folder, "test", classes, set(ids))
        evaluate_voc(read_back, ground_truth, classes)
        print(f"  from comp4 files (as the CLI): {time.perf_counter() - start:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--voc-images", type=int, default=4952)
    args = parser.parse_args()
    coco_benchmark(args.images)
    voc_benchmark(args.voc_images)


if __name__ == "__main__":
    main()
