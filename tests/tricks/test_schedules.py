"""LR schedules with warmup (§3.4) and random training shapes (§3.6)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from bof.errors import ConfigError
from bof.tricks.lr_schedule import build_scheduler, lr_at
from bof.tricks.random_shapes import shape_at, shape_range
from bof.tricks.weight_decay import parameter_groups

SCHEDULE = {"base_lr": 0.1, "iters_per_epoch": 10, "epochs": 20, "warmup_epochs": 2}


def test_warmup_is_linear_and_ends_at_the_base():
    assert lr_at(0, **SCHEDULE) == 0.0
    assert lr_at(5, **SCHEDULE) == pytest.approx(0.1 * 5 / 20)
    assert lr_at(20, **SCHEDULE) == pytest.approx(0.1)
    assert lr_at(20, mode="step", step_epochs=(10, 15), **SCHEDULE) == pytest.approx(0.1)


def test_cosine_values():
    warmup, total = 20, 200
    assert lr_at(warmup + (total - warmup) // 2, **SCHEDULE) == pytest.approx(0.05)
    quarter = warmup + (total - warmup) // 4
    assert lr_at(quarter, **SCHEDULE) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(total, **SCHEDULE) == pytest.approx(0.0, abs=1e-12)


def test_step_values_after_each_step():
    kwargs = dict(SCHEDULE, mode="step", step_epochs=(10, 15), step_factor=0.1)
    assert lr_at(99, **kwargs) == pytest.approx(0.1)
    assert lr_at(100, **kwargs) == pytest.approx(0.01)
    assert lr_at(149, **kwargs) == pytest.approx(0.01)
    assert lr_at(150, **kwargs) == pytest.approx(0.001)
    with pytest.raises(ConfigError, match="lr mode"):
        lr_at(0, **dict(SCHEDULE, mode="linear"))


def test_lambda_lr_follows_lr_at_every_iteration():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, iters_per_epoch=10, epochs=20, warmup_epochs=2, mode="cosine")
    for t in range(200):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(t, **SCHEDULE))
        optimizer.step()
        scheduler.step()


def test_no_weight_decay_on_norm_and_bias():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False))
    decay, no_decay = parameter_groups(model, 5e-4, decay_norm_and_bias=False)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 5e-4
    (everything,) = parameter_groups(model, 5e-4)
    assert len(everything["params"]) == 5


def test_shapes_constant_within_an_interval_and_multiples_of_32():
    sizes = shape_range(320, 608)
    assert sizes == (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
    drawn = [shape_at(t, sizes=sizes, interval=10, seed=3) for t in range(2000)]
    for block in range(200):
        assert len(set(drawn[block * 10 : block * 10 + 10])) == 1
    assert set(drawn) == set(sizes)
    assert sum(a != b for a, b in zip(drawn[::10], drawn[10::10], strict=False)) > 150


def test_shapes_equal_across_processes():
    """Ranks compute the shape independently; another interpreter must agree exactly."""
    code = "from bof.tricks.random_shapes import shape_at, shape_range; print([shape_at(t, sizes=shape_range(320, 608), interval=10, seed=5) for t in range(0, 500, 7)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == str([shape_at(t, sizes=shape_range(320, 608), interval=10, seed=5) for t in range(0, 500, 7)])


def test_shape_range_is_validated():
    with pytest.raises(ConfigError, match="multiples of 32"):
        shape_range(300, 608)
    with pytest.raises(ConfigError, match="interval"):
        shape_at(0, sizes=(320,), interval=0)
