"""The peer cross-check (benchmarks/peer_ultralytics.py, issue 27): the VOC -> YOLO conversion it
trains ultralytics on, the paired deltas it reports, and the shipped runs behind docs/mini.md.
Training itself needs ultralytics (`make peer`), which the test environment does not install."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "results" / "peer"


def peer():
    spec = importlib.util.spec_from_file_location("peer_ultralytics", ROOT / "benchmarks" / "peer_ultralytics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def annotation(objects: list[tuple[str, tuple[int, int, int, int]]], width=200, height=100) -> str:
    boxes = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2) in objects
    )
    return (
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>{boxes}</annotation>"
    )


def voc_folder(root: Path, classes: list[str], images: dict[str, str], splits: dict[str, list[str]]) -> Path:
    voc = root / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    (voc.parent / "classes.txt").write_text("\n".join(classes) + "\n")
    for image_id, xml in images.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"jpeg")
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


def test_voc_boxes_become_normalised_yolo_lines_with_trainval_for_training_and_test_for_validation(tmp_path):
    images = {
        "000001": annotation([("square", (11, 21, 60, 70)), ("circle", (1, 1, 200, 100))]),
        "000002": annotation([]),
    }
    voc = voc_folder(tmp_path, ["circle", "square"], images, {"trainval": ["000001"], "test": ["000002"]})
    data = peer().convert(voc, tmp_path / "work")
    work = tmp_path / "work"
    # VOC's corners are 1-based pixels: (11, 21, 60, 70) spans x 10..60, y 20..70 of 200 x 100
    assert (work / "labels" / "train" / "000001.txt").read_text() == (
        "1 0.175000 0.450000 0.250000 0.500000\n0 0.500000 0.500000 1.000000 1.000000\n"
    )
    assert (work / "labels" / "test" / "000002.txt").read_text() == ""  # an image without objects
    assert (work / "images" / "train" / "000001.jpg").resolve() == (voc / "JPEGImages" / "000001.jpg").resolve()
    assert data.read_text() == (
        f"path: {work.resolve()}\ntrain: images/train\nval: images/test\nnames:\n  0: circle\n  1: square\n"
    )


def test_a_class_outside_the_datasets_list_is_an_error_naming_the_annotation(tmp_path):
    voc = voc_folder(
        tmp_path, ["circle"], {"000001": annotation([("hexagon", (1, 1, 5, 5))])}, {"trainval": ["000001"], "test": []}
    )
    with pytest.raises(SystemExit, match=r"000001\.xml: class 'hexagon' is not in the dataset's classes"):
        peer().convert(voc, tmp_path / "work")


def test_each_variants_delta_is_paired_by_seed_with_a_student_t_interval():
    runs = [
        {"variant": variant, "seed": seed, "map50": value, "map50_95": value / 2}
        for variant, values in {"baseline": [50.0, 52.0, 51.0], "cos_lr": [51.0, 52.5, 53.0], "mixup": [49.0]}.items()
        for seed, value in enumerate(values)
    ]
    lines = peer().summary(runs, [0, 1, 2]).splitlines()
    deltas = [1.0, 0.5, 2.0]
    half = stats.t.ppf(0.975, 2) * stats.tstd(deltas) / math.sqrt(3)
    mean = sum(deltas) / 3
    assert lines[2] == "| baseline | 3 | 51.00 | — | 25.50 | — |"
    assert lines[3].startswith(f"| cos_lr | 3 | 52.17 | {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] |")
    assert lines[4] == "| mixup | 1 | 49.00 | -1.00 | 24.50 | -0.50 |"  # one seed: no interval


@pytest.mark.parametrize(("epochs", "variants"), [(48, ("baseline", "cos_lr", "mixup")), (96, ("baseline", "mixup"))])
def test_the_shipped_peer_runs_are_three_seeds_of_each_variant_and_their_summary(epochs, variants):
    suffix = f"{epochs}e_96px_b8"
    runs = [json.loads(path.read_text()) for path in sorted((SHIPPED / "runs").glob(f"*_{suffix}.json"))]
    assert sorted((run["variant"], run["seed"]) for run in runs) == [
        (variant, seed) for variant in variants for seed in (0, 1, 2)
    ]
    assert {(run["epochs"], run["imgsz"], run["versions"]["ultralytics"]) for run in runs} == {(epochs, 96, "8.3.0")}
    assert (SHIPPED / f"summary_{suffix}.md").read_text() == peer().summary(runs, [0, 1, 2]) + "\n"
