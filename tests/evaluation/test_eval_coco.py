"""COCO evaluation: equal to pycocotools' COCOeval, per-category AP, bad results files."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bof.cli import main
from bof.errors import DatasetError
from bof.evaluation.coco import STAT_NAMES, evaluate_coco
from bof.evaluation.formats import check_coco_results, read_coco_results


def random_coco(seed, num_images=60, num_categories=5):
    """Ground truth with crowd boxes, all three area ranges and images without objects,
    plus detections: jittered hits, duplicates, wrong classes and background."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(num_images)]
    categories = [{"id": 10 + 3 * c, "name": f"cat{c}"} for c in range(num_categories)]  # sparse ids
    annotations, results = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 7))):
            side = float(np.exp(rng.uniform(np.log(8), np.log(300))))
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            category = int(rng.choice([c["id"] for c in categories]))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                noise = rng.normal(0, 0.1 * side, size=4)
                label = category if rng.random() < 0.8 else int(rng.choice([c["id"] for c in categories]))
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": label,
                        "bbox": [x + noise[0], y + noise[1], max(1.0, w + noise[2]), max(1.0, h + noise[3])],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(0, 5))):
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice([c["id"] for c in categories])),
                    "bbox": [float(rng.uniform(0, 500)), float(rng.uniform(0, 400)), 40.0, 30.0],
                    "score": float(rng.random()),
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_reference(ground_truth, results, category_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
        if category_ids is not None:
            evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_equals_pycocotools(seed, backend):
    ground_truth, results = random_coco(seed)
    reference = pycocotools_reference(ground_truth, results)
    report = evaluate_coco(ground_truth, results, backend=backend)
    assert [report[name] for name in STAT_NAMES] == pytest.approx(list(reference), abs=1e-6)
    assert 0.05 < report["AP"] < 0.95  # a set that discriminates


def test_per_category_ap_equals_cocoeval_restricted_to_that_category():
    ground_truth, results = random_coco(5)
    report = evaluate_coco(ground_truth, results)
    for category in ground_truth["categories"]:
        alone = pycocotools_reference(ground_truth, results, category_ids=[category["id"]])
        assert report["per_category"][category["name"]] == pytest.approx(alone[0], abs=1e-6)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_no_detections_scores_zero_and_unseen_categories_are_none(backend):
    ground_truth, _ = random_coco(3)
    ground_truth["categories"].append({"id": 999, "name": "never"})
    report = evaluate_coco(ground_truth, [], backend=backend)
    assert report["AP"] == 0.0 and report["AR100"] == 0.0
    assert report["per_category"]["never"] is None


def test_inputs_are_not_modified():
    ground_truth, results = random_coco(6)
    before = copy.deepcopy((ground_truth, results))
    evaluate_coco(ground_truth, results)
    evaluate_coco(ground_truth, results, backend="pycocotools")
    assert (ground_truth, results) == before


def test_perfect_detections_score_one():
    ground_truth, _ = random_coco(4)
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in ground_truth["annotations"]
        if not a["iscrowd"]
    ]
    assert evaluate_coco(ground_truth, results)["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_id": 12345, "category_id": 10, "bbox": [1, 2, 3, 4], "score": 0.5}, "unknown image_id 12345"),
        ({"image_id": 1, "category_id": 11, "bbox": [1, 2, 3, 4], "score": 0.5}, "unknown category_id 11"),
        ({"image_id": 1, "category_id": 10, "bbox": [1, 2, 3], "score": 0.5}, "'bbox' must be four finite numbers"),
        ({"image_id": 1, "category_id": 10, "bbox": [1, 2, -3, 4], "score": 0.5}, "negative width or height"),
        (
            {"image_id": 1, "category_id": 10, "bbox": [1, 2, 3, 4], "score": float("nan")},
            "'score' must be a finite number",
        ),
        ({"image_id": 1, "category_id": 10, "bbox": [1, 2, 3, 4]}, "missing score"),
    ],
)
def test_bad_results_are_named(entry, message):
    with pytest.raises(DatasetError, match=message) as raised:
        check_coco_results([entry], "results.json", {1, 2}, {10, 13})
    assert raised.value.path == "results.json" and "entry 0" in raised.value.problem


BIG = "9" * 400  # valid JSON, but float() of it overflows


@pytest.mark.parametrize(
    ("bbox", "score", "problem"),
    [
        ("[1, 2, NaN, 4]", "0.5", "'bbox' must be four finite numbers [x, y, w, h], got [1, 2, nan, 4]"),
        ("[Infinity, 2, 3, 4]", "0.5", "'bbox' must be four finite numbers [x, y, w, h], got [inf, 2, 3, 4]"),
        ("[1, -Infinity, 3, 4]", "0.5", "'bbox' must be four finite numbers [x, y, w, h], got [1, -inf, 3, 4]"),
        ("[1, 2, 3, 1e999]", "0.5", "'bbox' must be four finite numbers [x, y, w, h], got [1, 2, 3, inf]"),
        (
            f"[1, 2, 3, {BIG}]",
            "0.5",
            "'bbox' must be four finite numbers [x, y, w, h], got [1, 2, 3, 999999999999999999...9999999999999999999]",
        ),
        ("[1, 2, 3, 4]", "NaN", "'score' must be a finite number, got nan"),
        ("[1, 2, 3, 4]", "Infinity", "'score' must be a finite number, got inf"),
        ("[1, 2, 3, 4]", "-Infinity", "'score' must be a finite number, got -inf"),
        ("[1, 2, 3, 4]", "-1e999", "'score' must be a finite number, got -inf"),
        ("[1, 2, 3, 4]", BIG, "'score' must be a finite number, got 999999999999999999...9999999999999999999"),
    ],
    ids=[
        "bbox NaN",
        "bbox Infinity",
        "bbox -Infinity",
        "bbox 1e999",
        "bbox 400 digits",
        "score NaN",
        "score Infinity",
        "score -Infinity",
        "score -1e999",
        "score 400 digits",
    ],
)
def test_non_finite_numbers_in_a_results_file_are_named(tmp_path, bbox, score, problem):
    """Python's json reads NaN/Infinity/-Infinity literals and 1e999 as floats; none may be scored."""
    path = tmp_path / "results.json"
    path.write_text(
        f'[{{"image_id": 1, "category_id": 10, "bbox": [1, 2, 3, 4], "score": 0.5}},\n'
        f' {{"image_id": 2, "category_id": 13, "bbox": {bbox}, "score": {score}}}]'
    )
    with pytest.raises(DatasetError) as raised:
        read_coco_results(path, {1, 2}, {10, 13})
    assert raised.value.path == str(path) and raised.value.problem == f"entry 1: {problem}"


def test_cli_coco(tmp_path, capsys):
    ground_truth, results = random_coco(0)
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = tmp_path / "metrics.json"
    args = [
        "evaluate",
        "coco",
        "--annotations",
        str(tmp_path / "gt.json"),
        "--results",
        str(tmp_path / "res.json"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["AP"] == pytest.approx(pycocotools_reference(ground_truth, results)[0], abs=1e-6)
    assert report["settings"]["num_detections"] == len(results)
    (tmp_path / "res.json").write_text(
        json.dumps(results + [{"image_id": 777, "category_id": 10, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    assert main(args) == 2
    assert f"entry {len(results)}: unknown image_id 777" in capsys.readouterr().err
    assert json.loads(out.read_text()) == report  # the earlier metrics file is untouched
