"""Figure 1's inference timing, measured as a benchmark does: an untimed warm-up, repeats in
interleaved order, every repeat kept with its median and interquartile range; and the
architectural identity of the timed models, the reason a freebie costs nothing at inference."""

from __future__ import annotations

import numpy as np
import torch

import bof.engine.predict
from bof.config import to_dict
from bof.engine.checkpoint import save_checkpoint
from bof.engine.figure_data import interleaved_order, throughput
from bof.engine.predict import MODEL_FORMAT
from bof.models import build_detector, parameter_count

CLASSES = ["circle", "octagon", "square", "diamond"]


def saved_model(config, path, seed: int):
    """A model.pt as training writes it, with random weights: timing needs no trained weights."""
    torch.manual_seed(seed)
    model = build_detector(config, len(CLASSES))
    save_checkpoint(
        {"format": MODEL_FORMAT, "config": to_dict(config), "classes": CLASSES, "model": model.state_dict()}, path
    )
    return path, parameter_count(model)


def test_interleaved_order_alternates_direction():
    assert interleaved_order(2, 5) == [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]]
    assert interleaved_order(3, 2) == [[0, 1, 2], [2, 1, 0]]


def test_throughput_of_two_models_of_one_config(tiny_config, tmp_path, monkeypatch):
    _, config = tiny_config("yolov3")
    (first, parameters), (second, _) = (saved_model(config, tmp_path / f"{n}.pt", n) for n in (0, 1))
    calls = []
    real_predict = bof.engine.predict.predict

    def recording_predict(model, dataset, context, *, batch_size):
        calls.append((id(model), len(dataset)))
        return real_predict(model, dataset, context, batch_size=batch_size)

    monkeypatch.setattr(bof.engine.predict, "predict", recording_predict)
    timed = throughput([first, second], images=4, repeats=3, batch_size=2)

    # one warm-up batch per model, then A B, B A, A B over the 4 images
    model_a, model_b = calls[0][0], calls[1][0]
    assert model_a != model_b
    assert calls == [(model_a, 2), (model_b, 2)] + [(model_a, 4), (model_b, 4), (model_b, 4), (model_a, 4)] + [
        (model_a, 4),
        (model_b, 4),
    ]
    assert timed["images"] == 4 and timed["batch_size"] == 2 and timed["repeats"] == 3 and timed["warmup_images"] == 2
    assert timed["threads"] == torch.get_num_threads() and timed["device"].startswith("cpu")
    assert [len(values) for values in timed["inference_repeats"]] == [3, 3]
    for values, median, quartiles in zip(
        timed["inference_repeats"], timed["inference_images_per_second"], timed["inference_interquartile"], strict=True
    ):
        assert all(value > 0 for value in values)
        assert median == float(np.median(values))
        assert quartiles == [float(np.percentile(values, 25)), float(np.percentile(values, 75))]
    assert timed["identical_architectures"] is True and timed["architecture_same_as"] == [0, 0]
    assert timed["parameters"] == [parameters, parameters] and timed["state_tensors"][0] == timed["state_tensors"][1]


def test_throughput_tells_different_architectures_apart(tiny_config, tmp_path):
    _, yolo = tiny_config("yolov3")
    _, rcnn = tiny_config("faster_rcnn")
    (first, yolo_parameters), (second, rcnn_parameters) = (
        saved_model(yolo, tmp_path / "yolo.pt", 0),
        saved_model(rcnn, tmp_path / "rcnn.pt", 0),
    )
    timed = throughput([first, second], images=2, repeats=1, batch_size=2)
    assert timed["identical_architectures"] is False and timed["architecture_same_as"] == [0, 1]
    assert timed["parameters"] == [yolo_parameters, rcnn_parameters] and yolo_parameters != rcnn_parameters
    assert [len(values) for values in timed["inference_repeats"]] == [1, 1]
