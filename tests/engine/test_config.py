"""Configs: typed, validated at the edge, errors that name the key and the file."""

from __future__ import annotations

import pytest

from bof.config import TrainConfig, load_config, to_dict
from bof.engine.pretrain import PretrainConfig
from bof.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, "seed: 3\noptim: {epochs: 5, step_epochs: [3, 4]}\ntricks: {mixup: {mode: beta}}\n")
    config = load_config(path, ["optim.lr=0.01", "tricks.label_smoothing=true", "model.width=0.5"])
    assert config.seed == 3 and config.optim.epochs == 5 and config.optim.step_epochs == (3.0, 4.0)
    assert config.optim.lr == 0.01 and config.tricks.label_smoothing is True and config.model.width == 0.5
    assert config.tricks.mixup.build().mode == "beta"
    assert load_config(None) == TrainConfig()
    assert to_dict(config)["optim"]["step_epochs"] == [3.0, 4.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optim: {epohcs: 3}", "unknown key 'optim.epohcs'"),
        ("sed: 1", "unknown key 'sed'"),
        ("optim: {epochs: three}", "optim.epochs: expected an integer, got 'three'"),
        ("optim: {epochs: -2}", "optim.epochs must be >= 1"),
        ("tricks: {mixup: {mode: beta, alpha: 0}}", "mixup beta parameters must be > 0"),
        ("tricks: {random_shapes: {enabled: true, min: 300, max: 608}}", "multiples of 32"),
        ("model: {arch: yolo5}", "model.arch: must be one of 'yolov3', 'faster_rcnn'"),
        ("model: {arch: faster_rcnn, backbone: darknet53}", "faster_rcnn takes a resnet50"),
        ("tricks: {label_smoothing: 1}", "tricks.label_smoothing: expected true or false"),
        ("data: {train: ['2007']}", "YEAR:SPLIT"),
        ("optim: {epochs: 4, step_epochs: [3, 2]}", "step_epochs must be increasing"),
        ("tricks: {batchnorm: {mode: group, group_size: 5}}\noptim: {batch_size: 16}", "must divide optim.batch_size"),
        ("- a list", "top level must be a mapping"),
        ("optim: {epochs: [", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_pretrain_config(tmp_path):
    config = load_config(
        write(tmp_path, "backbone: small_resnet\nmixup: true\n"), ["epochs=3", "warmup_epochs=1"], cls=PretrainConfig
    )
    assert config.mixup and config.epochs == 3 and config.label_smoothing == 0.1
    with pytest.raises(ConfigError, match="unknown key 'mixup_alpa'"):
        load_config(None, ["mixup_alpa=0.3"], cls=PretrainConfig)


def test_example_configs_are_valid():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "config" / "examples"
    paths = sorted(examples.glob("*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        load_config(path, cls=PretrainConfig if path.name.startswith("pretrain") else TrainConfig)


def test_pretraining_lighting_noise_moves_colours_along_imagenets_principal_components():
    import torch

    from bof.engine.pretrain import PCA_EIGENVALUES, PCA_EIGENVECTORS, Lighting

    image = torch.full((3, 4, 5), 0.5)
    assert torch.equal(Lighting(0.0)(image), image)
    torch.manual_seed(0)
    alpha = torch.randn(3) * 0.1
    torch.manual_seed(0)
    shifted = Lighting(0.1)(image)
    expected = PCA_EIGENVECTORS @ (alpha * PCA_EIGENVALUES)
    assert torch.allclose(shifted[:, 2, 3] - 0.5, expected) and torch.allclose(
        shifted - shifted[:, :1, :1], torch.zeros(1)
    )
