"""Configs: typed, validated at the edge, errors that name the key and the file."""

from __future__ import annotations

import re

import pytest
from conftest import tiny_pretraining

from bof.config import TrainConfig, load_config, to_dict
from bof.engine.build import detection_mixup
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
    assert config.tricks.mixup.mode == "beta" and detection_mixup(config.tricks.mixup).alpha == 1.5
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
        (
            "optim: {epochs: [",
            "not valid YAML (expected the node content, but found '<stream end>' at line 1, column 18)",
        ),
        ("optim: {step_factor: -1}", "optim.step_factor must be in (0, 1], got -1.0"),
        ("optim: {step_factor: 1.5}", "optim.step_factor must be in (0, 1], got 1.5"),
        ("optim: {lr: .nan}", "optim.lr: expected a finite number, got nan"),
        ("optim: {weight_decay: -.inf}", "optim.weight_decay: expected a finite number, got -inf"),
        ("optim: {epochs: 4, step_epochs: [.nan]}", "optim.step_epochs[0]: expected a finite number, got nan"),
        ("optim: {lr: 1" + "0" * 400 + "}", "optim.lr: expected a finite number, got 1000000000"),
        ("model: {width: .nan}", "model.width: expected a finite number, got nan"),
        (
            "model: {arch: faster_rcnn, backbone: small_resnet, min_size: 64, max_size: 64}",
            "need 0 < min_size < max_size, got 64, 64",
        ),
        ("model: {nms_iou: .inf}", "model.nms_iou: expected a finite number, got inf"),
        (
            "model: {anchors: [[.inf, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1]]}",
            "model.anchors[0][0]: expected a finite number, got inf",
        ),
        ("tricks: {mixup: {mode: beta, alpha: .inf}}", "tricks.mixup.alpha: expected a finite number, got inf"),
        ("augment: {max_expand_ratio: .inf}", "augment.max_expand_ratio: expected a finite number, got inf"),
        ("seed: 9223372036854775808", "seed must be in [0, 2**32 - 1 = 4294967295], got 9223372036854775808"),
        ("seed: 4294967296", "seed must be in [0, 2**32 - 1 = 4294967295], got 4294967296"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_command_line_and_json_values_are_checked_alike():
    with pytest.raises(
        ConfigError,
        match=r"^override 'optim.lr=\[1': not valid YAML \(expected ',' or '\]', but got '<stream end>' at line 1, column 3\)$",
    ):
        load_config(None, ["optim.lr=[1"])
    # --config-json text: YAML reads JSON; json.dumps writes NaN (a string to YAML), 1.0e+400 reads as inf
    with pytest.raises(ConfigError, match=r"^optim.lr: expected a number, got 'NaN'$"):
        load_config(None, text='{"optim": {"lr": NaN}}')
    with pytest.raises(ConfigError, match=r"^optim.lr: expected a finite number, got inf$"):
        load_config(None, text='{"optim": {"lr": 1.0e+400}}')
    with pytest.raises(ConfigError, match=r"^model.width: expected a finite number, got nan$"):
        load_config(None, ["model.width=.nan"])


def test_the_edges_of_the_ranges_are_usable():
    """The largest seed survives every use of it in training and pretraining; a step factor of 1 (no
    decay) and max_size one above min_size pass, and that resize runs (equal sizes would not)."""
    import torch
    from torchvision import tv_tensors

    from bof.config import SEED_MAX
    from bof.tricks.augmentation import TwoStageAugment
    from bof.tricks.random import generator_for

    config = load_config(None, [f"seed={SEED_MAX}", "optim.step_factor=1"])
    assert config.seed == SEED_MAX == 2**32 - 1 and config.optim.step_factor == 1.0
    assert load_config(None, [f"seed={SEED_MAX}"], cls=PretrainConfig).seed == SEED_MAX
    torch.Generator().manual_seed(SEED_MAX * 100_003 + 1000)  # bof/engine/train.py's and pretrain.py's
    generator_for(SEED_MAX, 1000, 10**9)
    with pytest.raises((RuntimeError, ValueError)):  # what 2**63 did, once the run folder existed
        torch.Generator().manual_seed(2**63 * 100_003)
    sizes = ["model.arch=faster_rcnn", "model.backbone=small_resnet", "model.min_size=64"]
    assert load_config(None, [*sizes, "model.max_size=65"]).model.max_size == 65
    image, boxes = torch.zeros(3, 30, 50, dtype=torch.uint8), torch.tensor([[1.0, 2.0, 20.0, 25.0]])
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(30, 50))}
    assert TwoStageAugment(64, 65)(image, target, generator=torch.Generator())[0].shape == (3, 39, 65)
    with pytest.raises(ValueError, match="max_size = 64 must be strictly greater"):
        TwoStageAugment(64, 64)(image, target, generator=torch.Generator())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=9223372036854775808", "seed must be in [0, 2**32 - 1 = 4294967295], got 9223372036854775808"),
        ("seed=-1", "seed must be in [0, 2**32 - 1 = 4294967295], got -1"),
        ("width=.nan", "width: expected a finite number, got nan"),
        ("depth=0", "pretrain: width and depth must be > 0, got 1.0, 0.0"),
        ("momentum=0", "pretrain: need weight_decay >= 0 and 0 < momentum < 1, got 0.0001, 0.0"),
        ("weight_decay=-1", "pretrain: need weight_decay >= 0 and 0 < momentum < 1, got -1.0, 0.9"),
        ("workers=-1", "workers >= 0"),
        ("lr=.inf", "lr: expected a finite number, got inf"),
    ],
)
def test_bad_pretrain_configs_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override], cls=PretrainConfig)


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

    from bof.engine.pretrain import PCA_EIGENVALUES, PCA_EIGENVECTORS, Lighting, to_device

    image = torch.full((3, 4, 5), 128, dtype=torch.uint8)
    unchanged, offset = Lighting(0.0)(image)
    assert unchanged is image and offset.tolist() == [0.0, 0.0, 0.0]
    torch.manual_seed(0)
    alpha = torch.randn(3) * 0.1
    torch.manual_seed(0)
    _, offset = Lighting(0.1)(image)
    assert torch.equal(offset, PCA_EIGENVECTORS @ (alpha * PCA_EIGENVALUES))
    # on the device: (128 / 255 + offset - mean) / std, the same at every pixel
    normalised = to_device((image[None], offset[None]), torch.device("cpu"))[0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(normalised[:, 2, 3], (128 / 255 + offset - mean) / std)
    assert torch.equal(normalised - normalised[:, :1, :1], torch.zeros(3, 4, 5))


def test_pretraining_weights_are_those_of_the_per_image_float_pipeline(tiny_synth, tmp_path):
    """Images cross to the device as uint8 and are normalised there; two epochs of pretraining
    (mixup, lighting, colour jitter) end on the weights that bof 41caee0 reached when each worker
    converted, lit and normalised its images in float32: |weights| summed, to the last digit."""

    from bof.engine.checkpoint import load_checkpoint
    from bof.engine.pretrain import pretrain

    pretrain(tiny_pretraining(tiny_synth, mixup=True), tmp_path / "run", progress=False)
    weights = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    total = sum(float(v.double().abs().sum()) for v in weights.values() if v.is_floating_point())
    assert total == pytest.approx(14635.09113183279, rel=1e-12)
