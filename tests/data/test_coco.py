"""COCO loader, VOC -> COCO conversion round trips, and bad COCO files."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from conftest import write_jpeg
from pycocotools.coco import COCO

from bof.cli import main
from bof.config import DataConfig
from bof.data.coco import CocoDetection, coco_image_ids, detection_to_coco
from bof.data.voc import VOCDetection
from bof.engine.build import open_split
from bof.errors import DatasetError


def assert_same_annotations(voc: VOCDetection, coco: CocoDetection) -> None:
    assert len(voc) == len(coco)
    assert coco.classes == voc.classes
    by_name = {s.image_path.name: s for s in coco.samples}
    for sample in voc.samples:
        twin = by_name[sample.image_path.name]
        assert twin.image_path == sample.image_path
        assert (twin.width, twin.height) == (sample.width, sample.height)
        np.testing.assert_array_equal(twin.boxes_xyxy, sample.boxes_xyxy)
        np.testing.assert_array_equal(twin.labels, sample.labels)
        np.testing.assert_array_equal(twin.difficult, sample.difficult)


@pytest.mark.parametrize("split", ["train", "test"])
def test_synth_coco_json_round_trips_the_voc_xml(tiny_synth, split):
    devkit = tiny_synth / "VOCdevkit"
    voc = VOCDetection(devkit, [("2007", split)])
    coco = CocoDetection(devkit, tiny_synth / "annotations" / f"instances_{split}.json")
    assert_same_annotations(voc, coco)
    assert coco.category_ids == [1, 2, 3, 4]
    image, target = coco[0]
    assert image.shape[-2:] == target["boxes"].canvas_size
    assert isinstance(target["image_id"], int)


def test_pycocotools_reads_the_synth_json(tiny_synth):
    coco = COCO(str(tiny_synth / "annotations" / "instances_trainval.json"))
    assert len(coco.getImgIds()) == len(
        (tiny_synth / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt").read_text().split()
    )
    annotation = coco.loadAnns(coco.getAnnIds())[0]
    x, y, w, h = annotation["bbox"]
    assert annotation["area"] == w * h and w > 0 and h > 0


def test_real_voc_converts_and_round_trips(real_voc, tmp_path):
    voc = VOCDetection(real_voc, [("2007", "trainval"), ("2012", "trainval")])
    data = detection_to_coco(voc, image_root=real_voc)
    assert [image["id"] for image in data["images"]] == [5, 7, 2008000008, 2008000015]
    assert data["images"][2]["file_name"] == "VOC2012/JPEGImages/2008_000008.jpg"
    assert [a["iscrowd"] for a in data["annotations"][:5]] == [0, 0, 1, 0, 1]  # difficult -> crowd region
    assert data["annotations"][0]["bbox"] == [262.0, 210.0, 62.0, 129.0]  # VOC (263, 211, 324, 339)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    assert_same_annotations(voc, CocoDetection(real_voc, path))


def test_cli_to_coco_matches_synth_output(tiny_synth, tmp_path):
    out = tmp_path / "val.json"
    assert (
        main(["data", "to-coco", "--voc", str(tiny_synth / "VOCdevkit"), "--sets", "2007:val", "--out", str(out)]) == 0
    )
    assert json.loads(out.read_text()) == json.loads((tiny_synth / "annotations" / "instances_val.json").read_text())


def test_to_coco_fails_rather_than_write_a_non_finite_number(tiny_synth, tmp_path, monkeypatch, capsys):
    """Should a NaN ever get past the loaders, the conversion stops in one line instead of writing ``NaN``."""
    convert = detection_to_coco

    def poisoned(dataset, image_root):
        data = convert(dataset, image_root)
        data["annotations"][0]["bbox"][0] = float("nan")
        return data

    monkeypatch.setattr("bof.data.coco.detection_to_coco", poisoned)
    out = tmp_path / "val.json"
    code = main(["data", "to-coco", "--voc", str(tiny_synth / "VOCdevkit"), "--sets", "2007:val", "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"bof data: error: {out}: not written, it would hold a non-finite number "
        "(Out of range float values are not JSON compliant)"
    ]
    assert not out.exists()


def test_coco_image_ids():
    assert coco_image_ids(["000005", "2008_000008"]) == [5, 2008000008]
    assert coco_image_ids(["cat", "dog"]) == [1, 2]
    assert coco_image_ids(["01", "1"]) == [1, 2]  # the digits would collide


def test_crowd_and_ignore_become_difficult(tmp_path):
    data = _small_coco(tmp_path)
    data["annotations"][0]["iscrowd"] = 1
    coco = CocoDetection(tmp_path, _dump(tmp_path, data))
    assert coco.samples[0].difficult.tolist() == [True, False]


def test_training_view_drops_crowd_regions_and_empty_images(tmp_path):
    data = _small_coco(tmp_path)
    data["annotations"][0]["iscrowd"] = 1
    data["annotations"][2]["iscrowd"] = 1
    path = _dump(tmp_path, data)
    everything = CocoDetection(tmp_path, path)
    assert [s.difficult.tolist() for s in everything.samples] == [[True, False], [True]]
    training = CocoDetection(tmp_path, path, use_crowd=False, skip_empty=True)
    assert [s.image_id for s in training.samples] == [1]  # image 2 held only a crowd region
    assert training.samples[0].difficult.tolist() == [False]
    assert training.samples[0].boxes_xyxy.tolist() == everything.samples[0].boxes_xyxy[1:].tolist()


def test_a_coco_training_config_trains_without_crowd_and_evaluates_with_it(tmp_path):
    """The wiring the trainer uses (``open_split``), not the dataset flags by hand: GluonCV's
    training view (no crowd, no empty image), and every image and crowd region for evaluation."""
    data = _small_coco(tmp_path)
    data["annotations"][0]["iscrowd"] = 1
    data["annotations"][2]["iscrowd"] = 1
    path = str(_dump(tmp_path, data))
    config = DataConfig(format="coco", root=str(tmp_path), train=(path,), val=(path,))
    train, val = open_split(config, "train"), open_split(config, "val")
    assert [s.image_id for s in train.samples] == [1]
    assert train.samples[0].difficult.tolist() == [False]
    assert train.samples[0].labels.tolist() == [train.classes.index("dog")]
    assert [s.image_id for s in val.samples] == [1, 2]
    assert [s.difficult.tolist() for s in val.samples] == [[True, False], [True]]


# --- bad COCO input ---


def _small_coco(root):
    write_jpeg(root / "img" / "1.jpg", 40, 30)
    write_jpeg(root / "img" / "2.jpg", 40, 30)
    return {
        "images": [
            {"id": 1, "file_name": "img/1.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "img/2.jpg", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5.5, 6.5, 3, 4], "area": 12, "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }


def _dump(root, data):
    """Strings "raw:TEXT" are written as the bare TEXT: numbers json.dumps cannot write (1e999)."""
    path = root / "instances.json"
    path.write_text(re.sub(r'"raw:([^"]*)"', r"\1", json.dumps(data)))
    return path


def test_sparse_category_ids_map_to_contiguous_labels(tmp_path):
    coco = CocoDetection(tmp_path, _dump(tmp_path, _small_coco(tmp_path)))
    assert coco.category_ids == [3, 7] and coco.classes == ["cat", "dog"]
    assert coco.samples[0].labels.tolist() == [0, 1]
    assert coco.samples[1].boxes_xyxy.tolist() == [[5.5, 6.5, 8.5, 10.5]]


def _break(data, how):
    if how == "unknown category":
        data["annotations"][2]["category_id"] = 99
        return "unknown category_id 99"
    if how == "inverted box":
        data["annotations"][2]["bbox"] = [5, 6, -3, 4]
        return "is inverted"
    if how == "empty box":
        data["annotations"][2]["bbox"] = [5, 6, 0, 4]
        return "is empty"
    if how == "box outside the image":
        data["annotations"][2]["bbox"] = [35, 6, 10, 4]
        return "is outside the 40x30 image"
    if how == "malformed bbox":
        data["annotations"][2]["bbox"] = [5, 6, "w", 4]
        return r"'bbox' must be \[x, y, w, h\] numbers"
    if how == "image without size":
        del data["images"][1]["width"]
        return "needs 'file_name', integer 'width' and 'height'"
    if how == "missing image file":
        data["images"][1]["file_name"] = "img/404.jpg"
        return "image file is missing"
    # Valid JSON whose numbers are not finite as floats: 1e999 reads as inf, a 400-digit integer
    # cannot be converted at all. Comparisons with them used to pass or crash.
    if how == "bbox x overflows to -inf":
        data["annotations"][2]["bbox"] = ["raw:-1e999", 6, 3, 4]
        return r"annotation 3 \(image 2\): bbox x is not a finite number \(-inf\)$"
    if how == "bbox width overflows to inf":
        data["annotations"][2]["bbox"] = [5, 6, "raw:1e999", 4]
        return r"annotation 3 \(image 2\): bbox width is not a finite number \(inf\)$"
    if how == "bbox integer too large":
        data["annotations"][2]["bbox"] = [5, "raw:" + "9" * 400, 3, 4]
        return r"annotation 3 \(image 2\): bbox y is not a finite number \(9{18}\.\.\.9{19}\)$"
    if how == "area overflows":
        data["annotations"][2]["area"] = "raw:1e999"
        return r"annotation 3 \(image 2\): area is not a finite number \(inf\)$"
    if how == "width overflows":
        data["images"][1]["width"] = "raw:1e999"
        return r"image 2: width is not a finite number \(inf\)$"
    if how == "height integer too large":
        data["images"][1]["height"] = "raw:" + "9" * 400
        return r"image 2: height is not a finite number \(9{18}\.\.\.9{19}\)$"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "unknown category",
        "inverted box",
        "empty box",
        "box outside the image",
        "malformed bbox",
        "image without size",
        "missing image file",
        "bbox x overflows to -inf",
        "bbox width overflows to inf",
        "bbox integer too large",
        "area overflows",
        "width overflows",
        "height integer too large",
    ],
)
def test_bad_coco_samples_strict_and_skip(tmp_path, how):
    data = _small_coco(tmp_path)
    message = _break(data, how)
    path = _dump(tmp_path, data)
    with pytest.raises(DatasetError, match=message) as raised:
        CocoDetection(tmp_path, path)
    assert raised.value.path.endswith(".json") or raised.value.path.endswith(".jpg")
    dataset = CocoDetection(tmp_path, path, on_error="skip")
    assert [s.image_id for s in dataset.samples] == [1]
    assert len(dataset.skipped) == 1 and re.search(message, dataset.skipped[0].problem)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("annotations"), "missing list 'annotations'"),
        (
            lambda d: d["annotations"].append({"id": 1, "image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2]}),
            "id 1 is used twice",
        ),
        (lambda d: d["annotations"][0].update(image_id=42), "unknown image_id 42"),
        (lambda d: d["images"][0].pop("id"), r"images\[0\] needs integer 'id'"),
    ],
)
def test_bad_coco_structure_is_named(tmp_path, mutate, message):
    data = copy.deepcopy(_small_coco(tmp_path))
    mutate(data)
    with pytest.raises(DatasetError, match=message) as raised:
        CocoDetection(tmp_path, _dump(tmp_path, data))
    assert raised.value.path.endswith("instances.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["annotations"][2]["bbox"].__setitem__(2, float("nan")), "annotations[2].bbox[2] is NaN"),
        (lambda d: d["images"][1].update(width=float("inf")), "images[1].width is Infinity"),
        (lambda d: d["annotations"][0].update(area=-float("inf")), "annotations[0].area is -Infinity"),
    ],
)
def test_nan_and_infinity_literals_are_not_json(tmp_path, mutate, message):
    """Python's json reads and writes NaN/Infinity/-Infinity, standard JSON has no such literal:
    the whole file is refused, in skip mode too, like any other invalid JSON."""
    data = _small_coco(tmp_path)
    mutate(data)
    path = _dump(tmp_path, data)  # json.dumps writes the literals
    for on_error in ("strict", "skip"):
        with pytest.raises(DatasetError) as raised:
            CocoDetection(tmp_path, path, on_error=on_error)
        assert raised.value.path == str(path)
        assert raised.value.problem == f"not valid JSON: {message} (JSON numbers must be finite)"


def test_invalid_json_names_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(DatasetError, match=r"broken\.json: not valid JSON \(line 2, column 12"):
        CocoDetection(tmp_path, path)
    assert main(["data", "check", "--coco", str(path), "--images", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
