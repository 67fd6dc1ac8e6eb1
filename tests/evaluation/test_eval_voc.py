"""VOC evaluation: each devkit rule on a hand-computed case, and agreement with a literal
transcription of the devkit's VOCevaldet.m / VOCap.m loops on random sets."""

from __future__ import annotations

import numpy as np
import pytest

from bof.evaluation.voc import ClassDetections, ImageGroundTruth, average_precision, evaluate_voc, voc_iou


def gt(*boxes, difficult=(), labels=None):
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    flags = np.zeros(len(boxes), dtype=bool)
    flags[list(difficult)] = True
    labels = np.zeros(len(boxes), dtype=np.int64) if labels is None else np.array(labels)
    return ImageGroundTruth(boxes, labels, flags)


def dets(*rows):
    """rows: (image_id, score, (xmin, ymin, xmax, ymax))."""
    return ClassDetections(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4),
    )


def ap(detections, ground_truth, metric="voc07", classes=("a",)):
    return evaluate_voc({"a": detections}, ground_truth, list(classes), metric=metric)["per_class"]["a"]


A, B = (1, 1, 10, 10), (21, 21, 30, 30)


def test_iou_uses_the_inclusive_plus_one():
    assert voc_iou(np.array([[1.0, 1, 1, 1]]), np.array([[1.0, 1, 1, 1]]))[0, 0] == 1.0  # a one-pixel box
    assert voc_iou(np.array([[1.0, 1, 10, 10]]), np.array([[1.0, 1, 10, 5]]))[0, 0] == 0.5  # 50 of 100 pixels
    assert (
        voc_iou(np.array([[1.0, 1, 10, 10]]), np.array([[11.0, 1, 20, 10]]))[0, 0] == 0.0
    )  # touching, no shared pixel


def test_iou_of_exactly_one_half_matches():
    # py-faster-rcnn's voc_eval.py (IoU > 0.5) would call this a false positive
    assert ap(dets(("i", 0.9, (1, 1, 10, 5))), {"i": gt(A)}) == 1.0


def test_difficult_matches_are_ignored_and_not_positives():
    truth = {"i": gt(A, B, difficult=[0])}
    # the top detection hits the difficult box: neither TP nor FP; recall is over 1 positive
    assert ap(dets(("i", 0.9, A), ("i", 0.8, B)), truth, "area") == 1.0
    assert ap(dets(("i", 0.9, A), ("i", 0.8, B)), truth, "voc07") == 1.0
    # unmatched detections stay false positives
    assert ap(dets(("i", 0.9, (50, 50, 60, 60)), ("i", 0.8, B)), truth, "area") == 0.5


def test_duplicates_are_false_positives_and_metrics_differ():
    truth = {"i": gt(A, B)}
    found = dets(("i", 0.9, A), ("i", 0.8, A), ("i", 0.7, B))
    # recall [.5, .5, 1], precision [1, .5, 2/3]
    assert ap(found, truth, "area") == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert ap(found, truth, "voc07") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_no_fall_back_to_the_next_best_ground_truth():
    left, right = (1, 1, 100, 10), (11, 1, 110, 10)
    second = (1, 1, 90, 10)  # IoU .9 with left (already taken), .727 with right
    assert voc_iou(np.array([second], float), np.array([left, right], float)).round(3).tolist() == [[0.9, 0.727]]
    truth = {"i": gt(left, right)}
    # a fall-back to `right` would make it a TP and AP 1; the devkit calls it a FP
    assert ap(dets(("i", 0.9, left), ("i", 0.8, second)), truth, "area") == pytest.approx(0.5)


# The doubles MATLAB's colon operator builds for `t=0:0.1:1` (VOCevaldet.m): the first half as a + k*d,
# the second as b - (n-k)*d, so only the 4th is off its decimal (`format long` rounds that away;
# `sprintf('%.17g', t(4))` shows it).
MATLAB_THRESHOLDS = [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]


def recall_of_exactly(tenths):
    """10 positives; ``tenths`` true positives of precision 1, so recall ends at exactly tenths/10."""
    truth = {f"i{k}": gt(A) for k in range(10)}
    return dets(*[(f"i{k}", 1.0 - k / 100, A) for k in range(tenths)]), truth


@pytest.mark.parametrize(
    ("tenths", "devkit_points", "gluoncv_points"),
    [
        (3, 3, 3),  # 0.3 < 0.30000000000000004: both drop the 4th threshold
        (6, 7, 6),  # MATLAB's 0.6 is exact (1 - 4*0.1); np.arange's is 0.6000000000000001
        (7, 8, 7),  # likewise 0.7
    ],
)
def test_eleven_point_thresholds_follow_matlab_and_gluoncv(tenths, devkit_points, gluoncv_points):
    found, truth = recall_of_exactly(tenths)
    assert ap(found, truth, "voc07") == pytest.approx(devkit_points / 11, abs=1e-15)
    assert ap(found, truth, "voc07-gluoncv") == pytest.approx(gluoncv_points / 11, abs=1e-15)
    assert ap(found, truth, "area") == pytest.approx(tenths / 10)


def test_ties_keep_input_order_like_matlabs_stable_sort():
    truth = {"i": gt(A)}
    miss_first = dets(("i", 0.5, B), ("i", 0.5, A))
    hit_first = dets(("i", 0.5, A), ("i", 0.5, B))
    assert ap(miss_first, truth, "area") == 0.5
    assert ap(hit_first, truth, "area") == 1.0


def test_classes_without_detections_or_ground_truth():
    truth = {"i": gt(A, B, labels=[0, 1])}
    report = evaluate_voc({"a": dets(("i", 0.9, A))}, truth, ["a", "b", "c"])
    assert report["per_class"] == {"a": 1.0, "b": 0.0, "c": None}
    assert report["mAP"] == 0.5  # c has no positives and is left out
    assert report["num_positives"] == {"a": 1, "b": 1, "c": 0}
    # detections of a class no image holds (a small test split): no AP, left out, no crash
    report = evaluate_voc({"a": dets(("i", 0.9, A)), "c": dets(("i", 0.8, B))}, truth, ["a", "b", "c"])
    assert report["per_class"] == {"a": 1.0, "b": 0.0, "c": None} and report["mAP"] == 0.5
    assert report["num_detections"] == {"a": 1, "b": 0, "c": 1}


def test_detection_in_an_image_without_ground_truth_is_a_false_positive():
    truth = {"i": gt(A), "empty": gt()}
    assert ap(dets(("empty", 0.9, A), ("i", 0.8, A)), truth, "area") == 0.5


def test_average_precision_edge_cases():
    assert average_precision(np.array([]), np.array([]), "voc07") == 0.0
    assert average_precision(np.array([]), np.array([]), "area") == 0.0
    with pytest.raises(ValueError, match="metric"):
        average_precision(np.array([1.0]), np.array([1.0]), "coco")


# --- a literal transcription of the devkit, the reference for random sets ---


def devkit_ap(rec, prec, use_07):
    if use_07:  # VOCevaldet.m, VOC2007
        ap = 0.0
        for t in MATLAB_THRESHOLDS:
            p = prec[rec >= t]
            ap += (p.max() if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0], rec, [1]])  # VOCap.m
    mpre = np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def devkit_class_ap(detections, truth, label, use_07):
    recs = {}
    npos = 0
    for image_id, t in truth.items():
        mine = t.labels == label
        recs[image_id] = {"bb": t.boxes[mine], "diff": t.difficult[mine], "det": np.zeros(mine.sum(), bool)}
        npos += int((~t.difficult[mine]).sum())
    order = sorted(range(len(detections.scores)), key=lambda k: -detections.scores[k])  # Python's sort is stable
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, k in enumerate(order):
        rec = recs[detections.image_ids[k]]
        bb = detections.boxes[k]
        ovmax, jmax = -np.inf, -1
        for j, bbgt in enumerate(rec["bb"]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if not rec["diff"][jmax]:
                if not rec["det"][jmax]:
                    tp[d] = 1
                    rec["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return devkit_ap(rec, prec, use_07)


def random_set(rng, num_images=30, num_classes=3):
    truth, rows = {}, {c: [] for c in range(num_classes)}
    for i in range(num_images):
        n = int(rng.integers(0, 6))
        xy = rng.integers(1, 80, size=(n, 2))
        wh = rng.integers(1, 40, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
        labels = rng.integers(0, num_classes, size=n)
        truth[f"img{i}"] = ImageGroundTruth(boxes, labels, rng.random(n) < 0.2)
        for box, label in zip(boxes, labels, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # duplicates and near misses
                jitter = np.round(rng.normal(0, 4, size=4))
                rows[int(label)].append((f"img{i}", float(np.round(rng.random(), 2)), box + jitter))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            x, y = rng.integers(1, 80, size=2)
            rows[int(rng.integers(num_classes))].append(
                (f"img{i}", float(np.round(rng.random(), 2)), np.array([x, y, x + 20, y + 20], float))
            )
    return truth, {f"c{c}": dets(*r) if r else ClassDetections() for c, r in rows.items()}


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_the_devkit_loop_on_random_sets(seed):
    rng = np.random.default_rng(seed)
    truth, detections = random_set(rng)
    classes = list(detections)
    for metric in ("voc07", "area"):
        report = evaluate_voc(detections, truth, classes, metric=metric)
        for label, name in enumerate(classes):
            if report["num_positives"][name] == 0:
                assert report["per_class"][name] is None
                continue
            expected = devkit_class_ap(detections[name], truth, label, metric == "voc07")
            assert report["per_class"][name] == pytest.approx(expected, abs=1e-12)
