"""VOC devkit loader: targets, real-VOC files, concatenation, and every kind of bad input."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import make_devkit, write_jpeg
from torchvision import tv_tensors

from bof.cli import main
from bof.data.detection import collate_detection
from bof.data.voc import VOC_CLASSES, VOCDetection
from bof.errors import DatasetError

GOOD = ("circle", False, False, (3, 4, 20, 30))


def test_synthetic_devkit_loads_with_torchvision_targets(tiny_synth):
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "test")])
    ids = (tiny_synth / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split()
    assert [s.image_id for s in dataset.samples] == ids
    assert dataset.classes == ["circle", "octagon", "square", "diamond"]
    image, target = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert boxes.canvas_size == tuple(image.shape[-2:])
    assert target["labels"].dtype == torch.int64 and target["difficult"].dtype == torch.bool
    assert len(target["labels"]) == len(boxes) == len(target["difficult"])
    assert target["image_id"] == ids[0]


def test_boxes_are_converted_from_one_based_inclusive_pixels(tmp_path):
    root = make_devkit(
        tmp_path,
        {"a": (40, 50, [("circle", False, True, (1, 2, 40, 50)), ("square", True, False, (5, 6, 7, 9))])},
        classes=["circle", "square"],
    )
    _, target = VOCDetection(root)[0]
    assert target["boxes"].tolist() == [[0.0, 1.0, 40.0, 50.0], [4.0, 5.0, 7.0, 9.0]]
    assert target["labels"].tolist() == [0, 1]
    assert target["difficult"].tolist() == [True, False]


def test_image_sets_concatenate(tiny_synth):
    devkit = tiny_synth / "VOCdevkit"
    joined = VOCDetection(devkit, [("2007", "train"), ("2007", "val")])
    trainval = VOCDetection(devkit, [("2007", "trainval")])
    assert sorted(s.image_id for s in joined.samples) == [s.image_id for s in trainval.samples]


def test_real_voc_shaped_devkit_loads_07_plus_12(real_voc):
    dataset = VOCDetection(real_voc, [("2007", "trainval"), ("2012", "trainval")])
    assert dataset.classes == list(VOC_CLASSES)
    assert [s.image_id for s in dataset.samples] == ["000005", "000007", "2008_000008", "2008_000015"]
    chairs = dataset.samples[0]
    assert chairs.labels.tolist() == [VOC_CLASSES.index("chair")] * 5
    assert chairs.difficult.tolist() == [False, False, True, False, True]
    assert chairs.boxes_xyxy[0].tolist() == [262.0, 210.0, 324.0, 339.0]
    horse_person = dataset.samples[2]  # VOC2012 field order, person with <part> boxes
    assert horse_person.labels.tolist() == [VOC_CLASSES.index("horse"), VOC_CLASSES.index("person")]
    assert horse_person.boxes_xyxy.tolist() == [[52.0, 86.0, 471.0, 420.0], [157.0, 43.0, 289.0, 167.0]]
    assert dataset.samples[3].boxes_xyxy.tolist() == [[238.0, 103.5, 270.5, 262.0]]  # decimal coordinates
    image, target = dataset[1]
    assert image.shape == (3, 333, 500) and target["image_id"] == "000007"


def test_loader_works_in_worker_processes(tiny_synth):
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "trainval")])
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 4
    assert [t["image_id"] for t in targets] == [s.image_id for s in dataset.samples[:4]]


# --- bad input: each case names the file and the problem; "skip" drops and counts it ---


def _corrupt(root, how):
    year = root / "VOC2007"
    if how == "missing image":
        (year / "JPEGImages" / "b.jpg").unlink()
        return "b.jpg", "image file is missing"
    if how == "unreadable image":
        (year / "JPEGImages" / "b.jpg").write_text("this is not a JPEG")
        return "b.jpg", "not a readable image"
    if how == "truncated JPEG":
        path = year / "JPEGImages" / "b.jpg"
        path.write_bytes(path.read_bytes()[:-400])
        return "b.jpg", "truncated"
    if how == "image size differs":
        write_jpeg(year / "JPEGImages" / "b.jpg", 31, 50)
        return "b.jpg", "image is 31x50 but"
    if how == "malformed XML":
        (year / "Annotations" / "b.xml").write_text("<annotation><size><width>40</width>")
        return "b.xml", "malformed XML"
    if how == "missing annotation":
        (year / "Annotations" / "b.xml").unlink()
        return "b.xml", "annotation file is missing"
    if how == "entity expansion":
        bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;">]><annotation>&y;</annotation>'
        (year / "Annotations" / "b.xml").write_text(bomb)
        return "b.xml", "XML refused for safety"
    if how == "missing size":
        (year / "Annotations" / "b.xml").write_text("<annotation><object><name>circle</name></object></annotation>")
        return "b.xml", "missing <size>"
    if how == "coordinate not a number":
        path = year / "Annotations" / "b.xml"
        path.write_text(path.read_text().replace("<xmin>3</xmin>", "<xmin>three</xmin>"))
        return "b.xml", "object 1 (circle): <xmin> is not a number: 'three'"
    if how in NON_FINITE:
        old, new, message = NON_FINITE[how]
        path = year / "Annotations" / "b.xml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        return "b.xml", message
    boxes = {
        "inverted box": ((20, 4, 3, 30), "is inverted"),
        "box outside the image": ((3, 4, 41, 30), "is outside the 40x50 image"),
        "box at zero": ((0, 4, 20, 30), "is outside the 40x50 image"),
    }
    if how in boxes:
        box, message = boxes[how]
        make_devkit(
            root,
            {"a": (40, 50, [GOOD]), "b": (40, 50, [("circle", False, False, box)]), "c": (40, 50, [GOOD])},
            classes=["circle"],
        )
        return "b.xml", message
    if how == "unknown class":
        make_devkit(
            root,
            {"a": (40, 50, [GOOD]), "b": (40, 50, [("elephant", False, False, (3, 4, 20, 30))]), "c": (40, 50, [GOOD])},
            classes=["circle"],
        )
        return "b.xml", "unknown class 'elephant'"
    raise AssertionError(how)


# Comparisons with NaN are false, so a NaN coordinate used to pass every box check.
NON_FINITE = {
    "xmin nan": ("<xmin>3</xmin>", "<xmin>nan</xmin>", "object 1 (circle): <xmin> is not a finite number: 'nan'"),
    "ymin -nan": ("<ymin>4</ymin>", "<ymin>-nan</ymin>", "object 1 (circle): <ymin> is not a finite number: '-nan'"),
    "xmax inf": ("<xmax>20</xmax>", "<xmax>inf</xmax>", "object 1 (circle): <xmax> is not a finite number: 'inf'"),
    "ymax -inf": ("<ymax>30</ymax>", "<ymax>-inf</ymax>", "object 1 (circle): <ymax> is not a finite number: '-inf'"),
    "xmax Infinity": (
        "<xmax>20</xmax>", "<xmax>Infinity</xmax>", "object 1 (circle): <xmax> is not a finite number: 'Infinity'"
    ),
    "ymax overflows": ("<ymax>30</ymax>", "<ymax>1e999</ymax>", "object 1 (circle): <ymax> is not a finite number: '1e999'"),
    "width nan": ("<width>40</width>", "<width>nan</width>", "<size>: <width> is not a finite number: 'nan'"),
    "height inf": ("<height>50</height>", "<height>inf</height>", "<size>: <height> is not a finite number: 'inf'"),
    "depth -inf": ("<depth>3</depth>", "<depth>-inf</depth>", "<size>: <depth> is not a finite number: '-inf'"),
}  # fmt: skip

BAD_INPUTS = [
    "missing image", "unreadable image", "truncated JPEG", "image size differs", "malformed XML", "missing annotation",
    "entity expansion", "missing size", "coordinate not a number", *NON_FINITE, "inverted box", "box outside the image",
    "box at zero", "unknown class",
]  # fmt: skip


def test_a_one_pixel_box_is_one_pixel_wide(tmp_path):
    """VOC's frame is inclusive: xmin == xmax is one pixel wide, [xmin - 1, xmax) in pixel edges."""
    root = make_devkit(
        tmp_path / "VOCdevkit", {"a": (40, 50, [("circle", False, True, (7, 4, 7, 30))])}, classes=["circle"]
    )
    sample = VOCDetection(root, [("2007", "trainval")]).samples[0]
    assert sample.boxes_xyxy.tolist() == [[6.0, 3.0, 7.0, 30.0]]


@pytest.fixture
def three_images(tmp_path):
    return make_devkit(tmp_path / "VOCdevkit", {name: (40, 50, [GOOD]) for name in "abc"}, classes=["circle"])


@pytest.mark.parametrize("how", BAD_INPUTS)
def test_bad_input_is_named_in_strict_mode(three_images, how):
    file_name, message = _corrupt(three_images, how)
    with pytest.raises(DatasetError) as raised:
        VOCDetection(three_images)
    assert raised.value.path.endswith(file_name)
    assert message in raised.value.problem
    if how in NON_FINITE:
        assert raised.value.problem == message


@pytest.mark.parametrize("how", BAD_INPUTS)
def test_bad_input_is_skipped_and_reported(three_images, how, caplog):
    file_name, message = _corrupt(three_images, how)
    with caplog.at_level(logging.WARNING, logger="bof.data"):
        dataset = VOCDetection(three_images, on_error="skip")
    assert [s.image_id for s in dataset.samples] == ["a", "c"]
    assert len(dataset.skipped) == 1 and dataset.skipped[0].path.endswith(file_name)
    assert "skipped 1 of 3 samples" in caplog.text and message in caplog.text
    if how in NON_FINITE:
        assert dataset.skipped[0].problem == message


def test_truncated_jpeg_found_late_still_names_the_file(three_images):
    _corrupt(three_images, "truncated JPEG")
    dataset = VOCDetection(three_images, check_images="none")
    with pytest.raises(DatasetError, match=r"b\.jpg: cannot decode image"):
        dataset[1]


def test_decode_check_reads_every_image(three_images):
    path = three_images / "VOC2007" / "JPEGImages" / "b.jpg"
    data = bytearray(path.read_bytes())
    data[2:200] = b"\x00" * 198  # wreck the header tables but keep the end marker
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"b\.jpg"):
        VOCDetection(three_images, check_images="decode")


def test_split_problems(three_images):
    with pytest.raises(DatasetError, match=r"test\.txt: image set file is missing"):
        VOCDetection(three_images, [("2007", "test")])
    (three_images / "VOC2007/ImageSets/Main/empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"empty\.txt: image set is empty"):
        VOCDetection(three_images, [("2007", "empty")])
    with pytest.raises(DatasetError, match="listed again"):
        VOCDetection(three_images, [("2007", "trainval"), ("2007", "trainval")])
    with pytest.raises(DatasetError, match="VOC devkit folder does not exist"):
        VOCDetection(three_images / "nope")


def test_everything_skipped_is_an_error(three_images):
    for name in "abc":
        (three_images / "VOC2007" / "JPEGImages" / f"{name}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"no usable samples .* \(3 skipped\)"):
        VOCDetection(three_images, on_error="skip")


def test_cli_reports_bad_input_without_a_traceback(three_images, capsys):
    _corrupt(three_images, "inverted box")
    assert main(["data", "check", "--voc", str(three_images)]) == 2
    err = capsys.readouterr().err
    assert "b.xml: object 1 (circle) box (20, 4, 3, 30) is inverted" in err and "Traceback" not in err
    assert main(["data", "check", "--voc", str(three_images), "--on-error", "skip"]) == 1
    out = capsys.readouterr().out
    assert "2 images" in out and "1 skipped" in out and "b.xml" in out


def test_cli_refuses_a_nan_coordinate_and_writes_no_coco_file(three_images, tmp_path, capsys):
    """<xmin>nan</xmin> used to pass ``data check`` (exit 0) and reach the COCO file as NaN."""
    _corrupt(three_images, "xmin nan")
    xml = three_images / "VOC2007" / "Annotations" / "b.xml"
    error = f"bof data: error: {xml}: object 1 (circle): <xmin> is not a finite number: 'nan'\n"
    assert main(["data", "check", "--voc", str(three_images)]) == 2
    assert capsys.readouterr().err == error
    out = tmp_path / "coco.json"
    assert main(["data", "to-coco", "--voc", str(three_images), "--out", str(out)]) == 2
    assert capsys.readouterr().err == error and not out.exists()
    assert main(["data", "to-coco", "--voc", str(three_images), "--out", str(out), "--on-error", "skip"]) == 1
    written = json.loads(out.read_text())
    assert [image["voc_id"] for image in written["images"]] == ["a", "c"]
    assert [annotation["bbox"] for annotation in written["annotations"]] == [[2.0, 3.0, 18.0, 27.0]] * 2
