"""k-means anchors (``bof anchors``): IoU distance, determinism, and the file a config names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bof.cli import main
from bof.config import load_config
from bof.data.voc import VOCDetection
from bof.errors import ConfigError
from bof.models import build_detector
from bof.models.anchors import box_shapes, kmeans_anchors, shape_iou


def test_shape_iou_by_hand():
    iou = shape_iou(np.array([[10.0, 20.0]]), np.array([[10.0, 20.0], [20.0, 10.0], [5.0, 10.0]]))
    assert iou.tolist() == [[1.0, pytest.approx(100 / 300), 0.25]]


def test_kmeans_recovers_nine_planted_shapes_sorted_by_area():
    planted = np.array([[8, 10], [12, 24], [26, 18], [24, 48], [50, 36], [46, 96], [92, 72], [124, 158], [300, 260]])
    rng = np.random.default_rng(1)
    shapes = np.concatenate([centre * rng.uniform(0.97, 1.03, size=(40, 2)) for centre in planted])
    anchors, mean_iou = kmeans_anchors(shapes, seed=0)
    assert np.allclose(anchors, planted, rtol=0.02)
    assert mean_iou > 0.95
    again, _ = kmeans_anchors(shapes, seed=0)
    assert np.array_equal(anchors, again)  # a seed fixes the result


def test_iou_distance_is_not_euclidean():
    """Two tight groups of small boxes and one spread group of large ones: Euclidean k-means
    would split the large group; 1 - IoU keeps one centre per small group."""
    rng = np.random.default_rng(0)
    small_a = np.array([4.0, 4.0]) * rng.uniform(0.9, 1.1, size=(50, 2))
    small_b = np.array([4.0, 12.0]) * rng.uniform(0.9, 1.1, size=(50, 2))
    large = np.array([200.0, 200.0]) * rng.uniform(0.8, 1.2, size=(50, 2))
    anchors, _ = kmeans_anchors(np.concatenate([small_a, small_b, large]), k=3, seed=0)
    assert np.allclose(anchors[0], [4, 4], rtol=0.1) and np.allclose(anchors[1], [4, 12], rtol=0.1)


def test_too_few_shapes_is_an_error():
    with pytest.raises(ConfigError, match="at least 9 distinct"):
        kmeans_anchors(np.array([[10.0, 10.0]] * 20))


def test_cli_writes_anchors_that_a_training_config_names(tiny_synth, tmp_path):
    devkit = tiny_synth / "VOCdevkit"
    out = tmp_path / "anchors.json"
    assert main(["anchors", "--voc", str(devkit), "--sets", "2007:trainval", "--size", "64", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    dataset = VOCDetection(devkit, [("2007", "trainval")], check_images="none")
    expected, mean_iou = kmeans_anchors(box_shapes(dataset, 64), seed=0)
    assert written["anchors"] == [[round(w, 2), round(h, 2)] for w, h in expected.tolist()]
    assert written["input_size"] == 64 and written["boxes"] == sum(len(s.labels) for s in dataset.samples)
    config = load_config(None, [f"model.anchors={out}", "model.width=0.125", "model.depth=0.34", "model.input_size=64"])
    model = build_detector(config, len(dataset.classes))
    assert torch.equal(model.anchors, torch.tensor(written["anchors"], dtype=torch.float32))
    assert torch.equal(model.state_dict()["anchors"], model.anchors)  # model.pt carries them


def test_box_shapes_are_in_input_pixels(tiny_synth):
    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "trainval")], check_images="none")
    sample = dataset.samples[0]
    shapes = box_shapes(dataset, 100)
    first = sample.boxes_xyxy[0]
    assert shapes[0].tolist() == pytest.approx(
        [(first[2] - first[0]) * 100 / sample.width, (first[3] - first[1]) * 100 / sample.height]
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [("[[1, 2]]", "need 9 positive"), ("missing.json", "missing.json is missing")],
)
def test_bad_anchors_are_refused_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        config = load_config(None, [f"model.anchors={value}"])
        build_detector(config, 3)
