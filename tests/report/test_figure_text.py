"""What the report writes on and under its figures: Figure 1's measured timing and the
architectural identity behind "the freebies cost nothing at inference", and the sentence an
empty detection panel (Figures 5 and 7) carries instead of looking like a bug."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import torch

import bof.report.figures as figures
from bof.data.images import to_png_base64
from bof.report.figures import empty_panel_note, figure1_summary, figure7

TIMING = {
    "figure": "figure1",
    "models": ["results/mini/runs/frcnn_r50/baseline/seed0/model.pt", "results/mini/runs/frcnn_r50/bof/seed0/model.pt"],
    "images": 64,
    "batch_size": 8,
    "threads": 2,
    "device": "cpu (x86_64)",
    "machine": {"cpu": "AMD EPYC 7B13", "cores": 2, "memory_bytes": 8_000_000_000},
    "warmup_images": 8,
    "repeats": 7,
    "inference_images_per_second": [10.04, 9.96],
    "inference_repeats": [[9.5, 9.8, 9.9, 10.04, 10.3, 10.4, 11.0], [9.2, 9.7, 9.9, 9.96, 10.2, 10.3, 12.0]],
    "inference_interquartile": [[9.81, 10.32], [9.7, 10.25]],
    "architecture_same_as": [0, 0],
    "identical_architectures": True,
    "state_tensors": [321, 321],
    "parameters": [1234567, 1234567],
}


def test_figure1_summary_states_the_measurement_and_the_identity(tmp_path):
    path = tmp_path / "figure1.json"
    path.write_text(json.dumps(TIMING))
    assert figure1_summary(path) == (
        "Inference images/s on cpu (x86_64), AMD EPYC 7B13, with 2 threads, median (interquartile range) of 7 "
        "interleaved repeats over 64 test images (batch 8) after an untimed warm-up: "
        "frcnn_r50/baseline 10.0 (9.8-10.3), frcnn_r50/bof 10.0 (9.7-10.2); "
        "frcnn_r50/baseline and frcnn_r50/bof have one architecture "
        "(321 state-dict tensors of the same names and shapes, 1,234,567 parameters)."
    )


def test_figure1_summary_names_a_different_architecture(tmp_path):
    models = [*TIMING["models"], "results/mini/runs/yolov3/baseline/seed0/model.pt"]
    data = {
        **TIMING,
        "models": models,
        "machine": None,
        "inference_images_per_second": [10.04, 9.96, 20.0],
        "inference_interquartile": [[9.81, 10.32], [9.7, 10.25], [19.5, 20.5]],
        "architecture_same_as": [0, 0, 2],
        "state_tensors": [321, 321, 100],
        "parameters": [1234567, 1234567, 4321],
    }
    path = tmp_path / "figure1.json"
    path.write_text(json.dumps(data))
    assert figure1_summary(path).endswith(
        "yolov3/baseline 20.0 (19.5-20.5); frcnn_r50/baseline and frcnn_r50/bof have one architecture "
        "(321 state-dict tensors of the same names and shapes, 1,234,567 parameters); "
        "yolov3/baseline has an architecture of its own (4,321 parameters)."
    )
    assert figure1_summary(path).startswith("Inference images/s on cpu (x86_64) with 2 threads,")


def test_figure1_summary_of_a_json_from_before_the_repeats(tmp_path):
    path = tmp_path / "figure1.json"
    old = {"figure": "figure1", "models": TIMING["models"], "images": 12, "threads": 2}
    path.write_text(json.dumps({**old, "inference_images_per_second": [14.9, 8.5]}))
    assert figure1_summary(path) == (
        "Inference images/s, one timing per model over 12 test images: frcnn_r50/baseline 14.9, frcnn_r50/bof 8.5."
    )


def test_empty_panel_note():
    assert empty_panel_note(0.3, 0.1234) == "no detection with score >= 0.30 (best 0.12)"
    assert empty_panel_note(0.3, None) == "no detection with score >= 0.30"


def test_figure7_says_why_a_panel_is_empty(tmp_path, monkeypatch):
    image = torch.full((3, 40, 50), 128, dtype=torch.uint8)
    found = {"boxes": [[5.0, 5.0, 30.0, 30.0]], "scores": [0.9], "labels": [1]}
    nothing = {"boxes": [], "scores": [], "labels": []}
    data = {
        "figure": "figure7",
        "model": "model.pt",
        "classes": ["circle", "octagon"],
        "score_threshold": 0.3,
        "images": [
            {"image_id": "a", "png": to_png_base64(image), "detections": found, "best_score": 0.9},
            {"image_id": "b", "png": to_png_base64(image), "detections": nothing, "best_score": 0.12},
            {"image_id": "c", "png": to_png_base64(image), "detections": nothing, "best_score": None},
        ],
    }
    path = tmp_path / "figure7.json"
    path.write_text(json.dumps(data))
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, out: drawn.append(figure) or out)
    assert figure7(path, tmp_path, "Faster R-CNN") == tmp_path / "figure7.png"
    texts = [[text.get_text().replace("\n", " ") for text in axis.texts] for axis in drawn[0].axes]
    plt.close(drawn[0])
    assert texts == [
        [],
        ["no detection with score >= 0.30 (best 0.12)"],
        ["no detection with score >= 0.30"],
    ]
