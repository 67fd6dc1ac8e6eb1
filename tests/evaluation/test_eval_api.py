"""The in-memory API and the CLI agree, through the ecosystem's own results formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bof.cli import main
from bof.data.coco import CocoDetection
from bof.data.voc import VOCDetection
from bof.errors import DatasetError
from bof.evaluation.api import (
    coco_ground_truth,
    coco_results,
    evaluate_coco_predictions,
    evaluate_voc_predictions,
    voc_detections,
)
from bof.evaluation.formats import read_voc_results, write_coco_results, write_voc_results


def noisy_predictions(dataset, seed=0):
    """A fake detector: jittered ground truth (sometimes mislabelled) plus background boxes."""
    rng = np.random.default_rng(seed)
    predictions = []
    for sample in dataset.samples:
        boxes, labels = sample.boxes_xyxy.astype(np.float64), sample.labels.copy()
        boxes = boxes + rng.normal(0, 2.0, size=boxes.shape)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        flip = rng.random(len(labels)) < 0.2
        labels[flip] = rng.integers(0, len(dataset.classes), size=int(flip.sum()))
        extra = rng.uniform(0, 40, size=(3, 2))
        boxes = np.concatenate([boxes, np.concatenate([extra, extra + 15], axis=1)])
        labels = np.concatenate([labels, rng.integers(0, len(dataset.classes), size=3)])
        predictions.append(
            {"image_id": sample.image_id, "boxes": boxes, "scores": rng.random(len(boxes)), "labels": labels}
        )
    return predictions


def test_perfect_predictions_of_the_non_difficult_boxes_score_one(tiny_synth, tmp_path):
    """Difficult boxes are neither positives nor false positives, in VOC mAP and in COCO AP
    (where they are crowd regions), whether or not a detection lands on them."""
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "test")], check_images="none")
    assert sum(int(s.difficult.sum()) for s in dataset.samples) > 0  # the case under test exists
    easy = [
        {
            "image_id": s.image_id,
            "boxes": s.boxes_xyxy[~s.difficult],
            "scores": np.ones(int((~s.difficult).sum())),
            "labels": s.labels[~s.difficult],
        }
        for s in dataset.samples
    ]
    every = [
        {"image_id": s.image_id, "boxes": s.boxes_xyxy, "scores": np.ones(len(s.labels)), "labels": s.labels}
        for s in dataset.samples
    ]
    for predictions in (easy, every):
        assert evaluate_voc_predictions(predictions, dataset)["mAP"] == 1.0
        assert evaluate_coco_predictions(predictions, dataset)["AP"] == pytest.approx(1.0, abs=1e-12)
    # the same through the files and the CLI, as the pipeline scores Tables 4-6
    ground_truth, id_map, category_ids = coco_ground_truth(dataset)
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    write_coco_results(tmp_path / "results.json", coco_results(easy, id_map, category_ids))
    args = ["evaluate", "coco", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "results.json")]
    assert main([*args, "--out", str(tmp_path / "coco.json")]) == 0
    assert json.loads((tmp_path / "coco.json").read_text())["AP"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_voc_cli_equals_api(tiny_synth, tmp_path, metric):
    devkit = tiny_synth / "VOCdevkit"
    dataset = VOCDetection(devkit, [("2007", "test")], check_images="none")
    predictions = noisy_predictions(dataset)
    expected = evaluate_voc_predictions(predictions, dataset, metric=metric)
    assert 0.1 < expected["mAP"] < 0.95
    write_voc_results(
        tmp_path / "results",
        "test",
        voc_detections(predictions, dataset.classes, {s.image_id for s in dataset.samples}),
        dataset.classes,
    )
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        f"comp4_det_test_{c}.txt" for c in dataset.classes
    )
    out = tmp_path / "voc.json"
    args = [
        "evaluate",
        "voc",
        "--devkit",
        str(devkit),
        "--split",
        "test",
        "--results",
        str(tmp_path / "results"),
        "--metric",
        metric,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["mAP"] == expected["mAP"] and report["per_class"] == expected["per_class"]
    assert report["metric"] == metric and report["settings"]["split"] == "test"


def test_voc_cli_needs_no_images(tiny_synth, tmp_path):
    devkit = tmp_path / "VOCdevkit"
    (devkit / "VOC2007").mkdir(parents=True)
    for part in ("Annotations", "ImageSets"):
        (devkit / "VOC2007" / part).symlink_to(tiny_synth / "VOCdevkit" / "VOC2007" / part)
    (devkit / "classes.txt").write_text((tiny_synth / "VOCdevkit" / "classes.txt").read_text())
    dataset = VOCDetection(devkit, [("2007", "test")], check_images="none")
    write_voc_results(
        tmp_path / "r",
        "test",
        voc_detections(noisy_predictions(dataset), dataset.classes, {s.image_id for s in dataset.samples}),
        dataset.classes,
    )
    assert (
        main(
            [
                "evaluate",
                "voc",
                "--devkit",
                str(devkit),
                "--results",
                str(tmp_path / "r"),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )


def test_coco_cli_equals_api(tiny_synth, tmp_path):
    devkit = tiny_synth / "VOCdevkit"
    annotations = tiny_synth / "annotations" / "instances_test.json"
    voc = VOCDetection(devkit, [("2007", "test")], check_images="none")
    coco = CocoDetection(devkit, annotations, check_images="none")
    predictions = noisy_predictions(voc)
    from_voc = evaluate_coco_predictions(predictions, voc)
    # the same predictions keyed by the COCO file's integer ids
    ground_truth, id_map, category_ids = coco_ground_truth(voc)
    by_coco_id = [dict(p, image_id=id_map[p["image_id"]]) for p in predictions]
    from_coco = evaluate_coco_predictions(by_coco_id, coco)
    write_coco_results(tmp_path / "results.json", coco_results(predictions, id_map, category_ids))
    out = tmp_path / "coco.json"
    assert (
        main(
            [
                "evaluate",
                "coco",
                "--annotations",
                str(annotations),
                "--results",
                str(tmp_path / "results.json"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from_cli = json.loads(out.read_text())
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert from_cli[name] == from_voc[name] == from_coco[name]
    assert 0.05 < from_cli["AP"] < 0.95


# --- bad VOC results files ---


@pytest.fixture
def results_dir(tiny_synth, tmp_path):
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "test")], check_images="none")
    ids = {s.image_id for s in dataset.samples}
    write_voc_results(
        tmp_path, "test", voc_detections(noisy_predictions(dataset), dataset.classes, ids), dataset.classes
    )
    return tmp_path, dataset.classes, ids


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("999999 0.5 1 1 10 10", "line 1: unknown image id '999999'"),
        ("{id} 0.5 1 1 10", "line 1: expected 'image_id score xmin ymin xmax ymax'"),
        ("{id} high 1 1 10 10", "line 1: score and coordinates must be numbers"),
        ("{id} nan 1 1 10 10", "line 1: non-finite number"),
        ("{id} 0.5 10 1 1 10", "line 1: inverted box"),
    ],
)
def test_bad_voc_results_lines(results_dir, line, message):
    folder, classes, ids = results_dir
    path = folder / f"comp4_det_test_{classes[1]}.txt"
    path.write_text(line.format(id=sorted(ids)[0]) + "\n" + path.read_text())
    with pytest.raises(DatasetError, match=message) as raised:
        read_voc_results(folder, "test", classes, ids)
    assert raised.value.path == str(path)


@pytest.mark.parametrize(
    "fields",
    ["nan 1 1 10 10", "-inf 1 1 10 10", "0.5 inf 1 10 10", "0.5 1 -inf 10 10", "0.5 1 1 1e999 10", "0.5 1 1 10 -nan"],
)
def test_non_finite_numbers_in_voc_results(results_dir, fields):
    folder, classes, ids = results_dir
    path = folder / f"comp4_det_test_{classes[1]}.txt"
    lines = path.read_text().splitlines()
    line = f"{sorted(ids)[0]} {fields}"
    path.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(DatasetError) as raised:
        read_voc_results(folder, "test", classes, ids)
    assert raised.value.path == str(path)
    assert raised.value.problem == f"line {len(lines) + 1}: non-finite number in {line!r}"


def test_unknown_and_missing_class_files(results_dir):
    folder, classes, ids = results_dir
    (folder / "comp4_det_test_elephant.txt").write_text("")
    with pytest.raises(DatasetError, match="results for unknown class 'elephant'"):
        read_voc_results(folder, "test", classes, ids)
    (folder / "comp4_det_test_elephant.txt").unlink()
    (folder / f"comp4_det_test_{classes[0]}.txt").unlink()
    with pytest.raises(DatasetError, match=f"results file for class '{classes[0]}' is missing"):
        read_voc_results(folder, "test", classes, ids)


def test_api_rejects_unknown_images_and_labels(tiny_synth):
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "test")], check_images="none")
    with pytest.raises(DatasetError, match="unknown image id 'nope'"):
        evaluate_voc_predictions([{"image_id": "nope", "boxes": np.zeros((0, 4)), "scores": [], "labels": []}], dataset)
    inverted = [{"image_id": dataset.samples[0].image_id, "boxes": [[5, 0, 0, 5]], "scores": [1.0], "labels": [0]}]
    with pytest.raises(DatasetError, match="inverted or non-finite box"):
        evaluate_voc_predictions(inverted, dataset)
    bad_label = [{"image_id": dataset.samples[0].image_id, "boxes": [[0, 0, 5, 5]], "scores": [1.0], "labels": [99]}]
    with pytest.raises(DatasetError, match="label outside"):
        evaluate_voc_predictions(bad_label, dataset)


def test_a_written_comp4_line_carries_the_xml_coordinates(real_voc, tmp_path):
    """000005.xml's first chair is <xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax>;
    a model predicting it outputs pixel edges [262, 210, 324, 339), and `bof predict` must write
    the XML's own numbers back."""
    import torch

    from bof.engine.predict import write_results

    dataset = VOCDetection(real_voc, [("2007", "trainval")])
    chair = dataset.classes.index("chair")
    prediction = {
        "image_id": "000005",
        "boxes": torch.tensor([[262.0, 210.0, 324.0, 339.0]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([chair]),
    }
    write_results([prediction], dataset, tmp_path, split="test")
    assert (tmp_path / "voc" / "comp4_det_test_chair.txt").read_text() == "000005 0.5 263.0 211.0 324.0 339.0\n"
    coco = json.loads((tmp_path / "coco_results.json").read_text())
    assert coco == [{"image_id": 5, "category_id": chair + 1, "bbox": [262.0, 210.0, 62.0, 129.0], "score": 0.5}]
