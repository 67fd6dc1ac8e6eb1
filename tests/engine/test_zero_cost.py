"""The paper's claim: every freebie is free at inference. For every trick combination the
deployed model has the baseline's architecture, parameter count and FLOPs."""

from __future__ import annotations

import itertools

import pytest
import torch

from bof.config import load_config
from bof.models import build_detector, inference_flops, parameter_count
from bof.tricks.sync_bn import convert_batchnorm, plain_batchnorm

TRICKS = {
    "mixup": ["tricks.mixup.mode=beta"],
    "label_smoothing": ["tricks.label_smoothing=true"],
    "no_augmentation": ["tricks.augmentation=false"],
    "cosine": ["tricks.lr_schedule=cosine"],
    "group_bn": ["tricks.batchnorm.mode=group", "tricks.batchnorm.group_size=2", "optim.batch_size=4"],
    "sync_bn": ["tricks.batchnorm.mode=sync"],
    "random_shapes": [
        "tricks.random_shapes.enabled=true",
        "tricks.random_shapes.min=32",
        "tricks.random_shapes.max=96",
    ],
}
ARCHS = {
    "yolov3": [
        "model.arch=yolov3",
        "model.backbone=darknet53",
        "model.width=0.125",
        "model.depth=0.34",
        "model.input_size=64",
    ],
    "faster_rcnn": [
        "model.arch=faster_rcnn",
        "model.backbone=small_resnet",
        "model.width=0.125",
        "model.min_size=64",
        "model.max_size=96",
    ],
}


def deployed(overrides):
    config = load_config(None, overrides)
    torch.manual_seed(0)  # equal weights, so that a two-stage head sees the same proposals
    model = build_detector(config, 4)
    model = convert_batchnorm(model, config.tricks.batchnorm.mode, group_size=config.tricks.batchnorm.group_size)
    return plain_batchnorm(model).eval()


def applicable(arch):
    """Random shapes is a single-stage trick: Faster R-CNN has every trick but that one."""
    return [n for n in TRICKS if not (arch == "faster_rcnn" and n == "random_shapes")]


def combinations(arch):
    names = applicable(arch)
    for size in range(len(names) + 1):
        yield from itertools.combinations(names, size)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_combination_deploys_the_baseline(arch):
    baseline = deployed(ARCHS[arch])
    expected = (
        str(baseline),
        parameter_count(baseline),
        inference_flops(baseline, (64, 80)),
        {k: v.shape for k, v in baseline.state_dict().items()},
    )
    names, checked, flops_checked = applicable(arch), 0, []
    for combination in combinations(arch):
        overrides = ARCHS[arch] + [o for name in combination for o in TRICKS[name]]
        model = deployed(overrides)
        assert str(model) == expected[0], combination
        assert parameter_count(model) == expected[1], combination
        assert {k: v.shape for k, v in model.state_dict().items()} == expected[3], combination
        if len(combination) in (0, 1, len(names)):  # FLOPs are slow to count: all singles and the full stack
            assert inference_flops(model, (64, 80)) == expected[2], combination
            flops_checked.append(combination)
        checked += 1
    assert checked == 2 ** len(names)
    assert tuple(names) in flops_checked  # the full stack of this detector's tricks ran
