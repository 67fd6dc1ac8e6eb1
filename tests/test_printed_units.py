"""One convention for the numbers of metrics: files hold fractions, text printed for people
shows percent with the % sign."""

from __future__ import annotations

import json

import pytest
from conftest import make_devkit

from bof.cli import main

CAT, DOG = (11, 11, 50, 50), (61, 61, 90, 90)


def test_bof_evaluate_voc_prints_percent_with_the_sign(tmp_path, capsys):
    """The cat is found (AP 1), the dog is missed (AP 0): mAP 0.5 in the JSON, "50.00 %" on the terminal."""
    devkit = make_devkit(
        tmp_path / "VOCdevkit",
        {"000001": (100, 100, [("cat", 0, 0, CAT), ("dog", 0, 0, DOG)])},
        split="test",
        classes=["cat", "dog"],
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "comp4_det_test_cat.txt").write_text("000001 0.9 11 11 50 50\n")
    (results / "comp4_det_test_dog.txt").write_text("000001 0.8 1 1 10 10\n")
    out = tmp_path / "voc.json"
    assert main(["evaluate", "voc", "--devkit", str(devkit), "--results", str(results), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mAP"] == 0.5 and report["per_class"] == {"cat": pytest.approx(1.0), "dog": 0.0}
    assert capsys.readouterr().out.splitlines() == [
        "VOC2007 test mAP (voc07, IoU 0.5): 50.00 %",
        "  cat              100.00 %",
        "  dog              0.00 %",
    ]


def test_bof_evaluate_coco_prints_percent_with_the_sign(tmp_path, capsys):
    """A medium cat found, a small dog missed, no large object: APl is COCOeval's -1, printed "n/a"."""
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 0},
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "res.json").write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}])
    )
    out = tmp_path / "coco.json"
    args = ["evaluate", "coco", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json")]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [report[name] for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == [0.5, 0.5, 0.5, 0.0, 1.0, -1.0]
    assert capsys.readouterr().out == "AP 50.00 %  AP50 50.00 %  AP75 50.00 %  APs 0.00 %  APm 100.00 %  APl n/a\n"


def test_bof_train_and_pretrain_print_percent_with_the_sign(tmp_path, capsys, monkeypatch):
    """What the engines return is a fraction (as metrics.json holds it); the CLIs print it in percent."""
    import bof.engine.pretrain
    import bof.engine.train

    monkeypatch.setattr(bof.engine.train, "train", lambda *args, **kwargs: {"metric_name": "mAP", "value": 0.00448})
    monkeypatch.setattr(bof.engine.pretrain, "pretrain", lambda *args, **kwargs: {"top1": 0.912})
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "pretrain"), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'run'}: mAP 0.45 %",
        f"{tmp_path / 'pretrain'}: top-1 91.20 %",
    ]
