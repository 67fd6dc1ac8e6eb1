"""``bof synth``: layout, VOC fields, determinism, the problem's difficulty, safe writing."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SYNTH
from PIL import Image

from bof.cli import main
from bof.data.synth.config import SynthConfig
from bof.data.synth.render import SceneConfig, _annotate, render_scene
from bof.data.synth.shapes import MAX_CLASSES, class_names
from bof.data.synth.writer import SPLITS, generate
from bof.errors import BofError, ConfigError


def tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def split_ids(root: Path, split: str) -> list[str]:
    return (root / "VOCdevkit/VOC2007/ImageSets/Main" / f"{split}.txt").read_text().split()


def test_layout_is_the_voc_devkit(tiny_synth):
    year = tiny_synth / "VOCdevkit" / "VOC2007"
    ids = {split: split_ids(tiny_synth, split) for split in SPLITS}
    assert set(ids["train"]) | set(ids["val"]) == set(ids["trainval"])
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["trainval"]) & set(ids["test"])
    assert len(ids["trainval"]) + len(ids["test"]) == TINY_SYNTH.num_images
    assert all(ids[split] == sorted(ids[split]) for split in SPLITS)
    for image_id in ids["trainval"] + ids["test"]:
        assert (year / "Annotations" / f"{image_id}.xml").is_file()
        assert (year / "JPEGImages" / f"{image_id}.jpg").is_file()
    assert (tiny_synth / "VOCdevkit" / "classes.txt").read_text().split() == class_names(4)
    for split in SPLITS:
        coco = json.loads((tiny_synth / "annotations" / f"instances_{split}.json").read_text())
        assert [image["voc_id"] for image in coco["images"]] == ids[split]
    for split in ("train", "val"):
        for name in class_names(4):
            assert list((tiny_synth / "classification" / split / name).glob("*.jpg"))
    manifest = json.loads((tiny_synth / "synth.json").read_text())
    assert manifest["config"]["seed"] == TINY_SYNTH.seed
    assert manifest["classes"] == class_names(4)


def test_xml_has_the_voc_fields_and_one_based_boxes(tiny_synth):
    year = tiny_synth / "VOCdevkit" / "VOC2007"
    checked = 0
    for xml_path in sorted((year / "Annotations").glob("*.xml")):
        root = ElementTree.parse(xml_path).getroot()
        assert root.findtext("folder") == "VOC2007"
        assert root.findtext("filename") == xml_path.stem + ".jpg"
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        assert root.findtext("size/depth") == "3"
        with Image.open(year / "JPEGImages" / root.findtext("filename")) as image:
            assert image.size == (width, height)
        for obj in root.iter("object"):
            assert obj.findtext("name") in class_names(4)
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") in ("0", "1")
            assert obj.findtext("difficult") in ("0", "1")
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin <= xmax <= width and 1 <= ymin <= ymax <= height
            checked += 1
    assert checked > 20


def test_same_seed_gives_byte_identical_files_with_any_worker_count(tmp_path):
    config = replace(TINY_SYNTH, num_images=12)
    generate(config, tmp_path / "a", workers=1, progress=False)
    generate(config, tmp_path / "b", workers=2, progress=False)
    generate(replace(config, seed=config.seed + 1), tmp_path / "c", workers=1, progress=False)
    digest_a = tree_digest(tmp_path / "a")
    assert digest_a == tree_digest(tmp_path / "b")
    digest_c = tree_digest(tmp_path / "c")
    differing = [name for name in digest_a if name.endswith(".jpg") and digest_a[name] != digest_c.get(name)]
    assert len(differing) > len(digest_a) // 2


def test_scenes_make_a_real_detection_problem():
    """Across many scenes: tiny and large objects, truncation, difficulty, occlusion,
    several objects an image, varied image shapes, and every class present."""
    config = SceneConfig(num_classes=10, image_size=256)
    sides, shapes, per_image, labels = [], set(), [], []
    truncated = difficult = overlapping = 0
    for index in range(150):
        pixels, objects = render_scene(np.random.default_rng([7, index]), config)
        shapes.add(pixels.shape[:2])
        per_image.append(len(objects))
        for o in objects:
            sides.append(max(o.box[2] - o.box[0], o.box[3] - o.box[1]) + 1)
            truncated += o.truncated
            difficult += o.difficult
            labels.append(o.label)
        boxes = [o.box for o in objects]
        overlapping += any(
            min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1])
            for i, a in enumerate(boxes)
            for b in boxes[i + 1 :]
        )
    assert min(sides) <= 12 and max(sides) >= 180
    assert truncated > 0.1 * len(sides) and difficult > 0.02 * len(sides)
    assert overlapping > 20
    assert np.mean(per_image) > 2 and max(per_image) >= 5
    assert len(shapes) > 50
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    assert set(labels) == set(range(10))


def test_boxes_cover_visible_pixels_and_hidden_objects_are_difficult():
    # Object 0 is a 10x10 square whose right half object 1 covers; object 2 is 95 % hidden.
    owner = np.full((20, 30), -1, dtype=np.int16)
    owner[0:10, 0:10] = 0
    owner[0:10, 5:15] = 1
    owner[12:20, 20:30] = 2
    drawn = [(0, 100, 100, False), (1, 100, 100, False), (2, 1600, 80, True)]
    objects = _annotate(owner, drawn, SceneConfig(difficult_min_side=4))
    assert [o.box for o in objects] == [(1, 1, 5, 10), (6, 1, 15, 10)]  # object 2 (5 % visible) is dropped
    assert [o.difficult for o in objects] == [False, False]
    drawn[0] = (0, 200, 100, False)  # now only 25 % of object 0 is visible
    objects = _annotate(owner, drawn, SceneConfig(difficult_min_side=4))
    assert objects[0].difficult and not objects[1].difficult


def test_options_are_validated_with_clear_messages(tmp_path, capsys):
    with pytest.raises(ConfigError, match="classes must be between 1 and 20"):
        SynthConfig(num_classes=MAX_CLASSES + 1)
    with pytest.raises(ConfigError, match="num_images must be at least 4"):
        SynthConfig(num_images=2)
    assert main(["synth", "--out", str(tmp_path / "x"), "--classes", "0"]) == 2
    assert "classes must be between 1 and 20, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_existing_output_is_kept_unless_forced(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(BofError, match="already exists"):
        generate(replace(TINY_SYNTH, num_images=6), out, progress=False)
    assert (out / "precious.txt").read_text() == "keep me"
    generate(replace(TINY_SYNTH, num_images=6), out, force=True, progress=False)
    assert not (out / "precious.txt").exists() and (out / "synth.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folders left


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_render(rng, config):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return render_scene(rng, config)

    monkeypatch.setattr("bof.data.synth.writer.render_scene", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate(replace(TINY_SYNTH, num_images=8), tmp_path / "out", workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--num-images",
        "--image-size",
        "--classes",
        "--seed",
        "--workers",
        "--force",
        "difficult",
        "truncated",
        "byte-identical",
    ):
        assert option in text


def test_cli_writes_a_dataset_the_loaders_open(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--num-images",
                "8",
                "--image-size",
                "64",
                "--classes",
                "3",
                "--cls-images-per-class",
                "2",
                "--cls-image-size",
                "32",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert "images_per_split" in capsys.readouterr().out
    assert main(["data", "check", "--voc", str(out / "VOCdevkit"), "--sets", "2007:trainval,2007:test"]) == 0
    assert "8 images" in capsys.readouterr().out
