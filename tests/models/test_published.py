"""Published ImageNet backbones (issue 24): each publisher's file format, written here from a
publisher's model with random weights, loads into bof's backbone and gives the publisher's
features; checksums are checked and a bad or missing file is one line; the download runs against
a real HTTP server on 127.0.0.1. No network."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50, resnet101

from bof.cli import main
from bof.errors import BofError
from bof.models import published
from bof.models.darknet import Darknet53
from bof.models.faster_rcnn import resnet_body


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch.hub's cache in a temporary folder: what `bof fetch-backbone` writes, training reads."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def pin(monkeypatch, backbone: str, **changes) -> None:
    entry = dataclasses.replace(published.PUBLISHED[backbone], **changes)
    monkeypatch.setitem(published.PUBLISHED, backbone, entry)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_pinned_resnet_files_are_torchvisions_imagenet1k_v1():
    from torchvision.models import ResNet50_Weights, ResNet101_Weights

    for backbone, weights in (
        ("resnet50", ResNet50_Weights.IMAGENET1K_V1),
        ("resnet101", ResNet101_Weights.IMAGENET1K_V1),
    ):
        entry = published.PUBLISHED[backbone]
        assert entry.url == weights.url and entry.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        # torchvision names each file after the first 8 hex digits of its SHA-256 (torch.hub checks them)
        assert weights.url.endswith(f"-{entry.sha256}.pth")


@pytest.mark.parametrize(("backbone", "build"), [("resnet50", resnet50), ("resnet101", resnet101)])
def test_torchvisions_resnet_file_gives_torchvisions_outputs(backbone, build, hub, monkeypatch):
    torch.manual_seed(0)
    reference = build().eval()
    for module in reference.modules():  # statistics other than BN's defaults, so a missed buffer shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
    hub.mkdir(parents=True)
    path = published.published_path(backbone)  # torchvision's file name, in the hub's cache
    torch.save(reference.state_dict(), path)
    pin(monkeypatch, backbone, sha256=digest(path))
    body = resnet_body(backbone, frozen_bn=True).eval()  # what a Faster R-CNN starts from
    assert published.load_published(backbone, body) == path
    # in float64: the mapping is compared, not float32's rounding (FrozenBatchNorm2d folds BN differently)
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(body.double()(image), reference.double()(image), rtol=1e-5, atol=1e-5)


# Darknet-53 as darknet53.cfg defines it: (filters, size, stride) convs, each with BN and a leaky
# ReLU of 0.1; a shortcut (from=-3, linear) after each residual's 1x1 and 3x3 pair.
def darknet53_layers() -> list:
    layers = [("conv", 32, 3, 1)]
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        layers.append(("conv", filters, 3, 2))
        for _ in range(blocks):
            layers += [("conv", filters // 2, 1, 1), ("conv", filters, 3, 1), ("shortcut",)]
    return layers


def write_darknet_file(path, generator: np.random.Generator) -> list[dict]:
    """A Darknet weights file (version 0.2: seen as int64) of random weights; the layers' arrays."""
    convs, channels = [], 3
    with open(path, "wb") as stream:
        np.array([0, 2, 0], dtype="<i4").tofile(stream)
        np.array([32013312], dtype="<i8").tofile(stream)
        for layer in darknet53_layers():
            if layer[0] != "conv":
                continue
            _, filters, size, stride = layer
            conv = {
                "bias": generator.uniform(-0.5, 0.5, filters),
                "scale": generator.uniform(0.5, 1.5, filters),
                "mean": generator.uniform(-0.5, 0.5, filters),
                "var": generator.uniform(0.5, 2.0, filters),
                "weight": generator.normal(0, (2 / (channels * size * size)) ** 0.5, (filters, channels, size, size)),
            }
            for key in ("bias", "scale", "mean", "var", "weight"):
                conv[key] = conv[key].astype("<f4")
                conv[key].tofile(stream)
            convs.append(conv | {"stride": stride, "size": size})
            channels = filters
    return convs


def darknet_forward(convs: list[dict], x: torch.Tensor) -> list[torch.Tensor]:
    """darknet53.cfg's forward with the file's arrays: conv, BN (eps 1e-5, cuDNN's), leaky 0.1, shortcuts."""
    outputs, convs, features = [], iter(convs), []
    for layer in darknet53_layers():
        if layer[0] == "shortcut":
            x = x + outputs[-3]
        else:
            conv = next(convs)
            tensor = {key: torch.from_numpy(value) for key, value in conv.items() if isinstance(value, np.ndarray)}
            x = F.conv2d(x, tensor["weight"], stride=conv["stride"], padding=conv["size"] // 2)
            x = F.batch_norm(x, tensor["mean"], tensor["var"], tensor["scale"], tensor["bias"], eps=1e-5)
            x = F.leaky_relu(x, 0.1)
        outputs.append(x)
        if x.shape[1] in (256, 512, 1024) and layer[0] == "shortcut":
            features.append(x)
    # the stride-8, -16 and -32 maps: the last shortcut of stages 3, 4 and 5
    by_channels = {feature.shape[1]: feature for feature in features}
    return [by_channels[256], by_channels[512], by_channels[1024]]


def test_a_darknet_weights_file_gives_darknets_features(hub):
    hub.mkdir(parents=True)
    convs = write_darknet_file(hub / "darknet53.conv.74", np.random.default_rng(0))
    body = Darknet53().eval()
    published.load_published("darknet53", body)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for mine, theirs in zip(body(image), darknet_forward(convs, image), strict=True):
            assert mine.shape == theirs.shape
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_a_truncated_darknet_file_is_refused_in_one_line(hub):
    hub.mkdir(parents=True)
    path = hub / "darknet53.conv.74"
    path.write_bytes(np.array([0, 2, 0, 0, 0], dtype="<i4").tobytes() + np.zeros(1000, dtype="<f4").tobytes())
    with pytest.raises(BofError) as error:
        published.load_published("darknet53", Darknet53())
    # 52 convs with BN (darknet53.conv.74), or those and the 1000-class classifier (darknet53.weights)
    assert str(error.value) == (
        f"{path}: holds 1000 weights, Darknet-53's file 40620640 (its classifier's 41645640): not its ImageNet weights"
    )


def test_darknet53_without_a_pinned_digest_or_its_file_says_how_to_fetch_it(hub):
    with pytest.raises(BofError) as error:
        published.load_published("darknet53", Darknet53())
    assert str(error.value).startswith(f"{hub / 'darknet53.conv.74'}: darknet53's published weights are missing; ")
    assert main(["fetch-backbone", "darknet53"]) == 2


def test_a_wrong_checksum_and_a_missing_file_are_one_line_each_and_write_nothing(hub, tmp_path, capsys):
    copy = tmp_path / "resnet50.pth"
    copy.write_bytes(b"not torchvision's file")
    assert main(["fetch-backbone", "resnet50", "--from", str(copy)]) == 2
    assert capsys.readouterr().err == (
        f"bof fetch-backbone: error: {copy}: SHA-256 {digest(copy)} does not match the pinned 0676ba61: "
        "a different or damaged file\n"
    )
    assert main(["fetch-backbone", "resnet50", "--from", str(tmp_path / "absent.pth")]) == 2
    assert capsys.readouterr().err == (
        f"bof fetch-backbone: error: {tmp_path / 'absent.pth'}: backbone weights file is missing\n"
    )
    assert not hub.exists() or not any(hub.iterdir())


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_download_is_verified_before_it_is_put_in_place(hub, served, monkeypatch, capsys):
    folder, url = served
    (folder / "darknet53.conv.74").write_bytes(b"published bytes")
    pin(monkeypatch, "darknet53", url=f"{url}/darknet53.conv.74")
    good = hashlib.sha256(b"published bytes").hexdigest()
    assert main(["fetch-backbone", "darknet53", "--sha256", "0" * 64]) == 2
    assert "does not match the pinned 0000" in capsys.readouterr().err
    assert not (hub / "darknet53.conv.74").exists() and not list(hub.glob("*.partial"))
    assert main(["fetch-backbone", "darknet53", "--sha256", good]) == 0
    assert (hub / "darknet53.conv.74").read_bytes() == b"published bytes"
    # fetched again: the verifying file is kept (its mtime, which Snakemake reads), nothing downloaded
    (folder / "darknet53.conv.74").unlink()
    mtime = (hub / "darknet53.conv.74").stat().st_mtime_ns
    assert main(["fetch-backbone", "darknet53", "--sha256", good]) == 0
    assert (hub / "darknet53.conv.74").stat().st_mtime_ns == mtime
    assert capsys.readouterr().out.startswith(f"{hub / 'darknet53.conv.74'}: darknet53, Redmon & Farhadi")


def test_a_yolov3_config_with_pretrained_imagenet_starts_from_the_published_darknet(hub):
    from bof.config import TrainConfig, build
    from bof.models import build_detector

    hub.mkdir(parents=True)
    convs = write_darknet_file(hub / "darknet53.conv.74", np.random.default_rng(2))
    config = build(TrainConfig, {"model": {"arch": "yolov3", "backbone": "darknet53", "pretrained": "imagenet"}})
    stem = build_detector(config, num_classes=20).backbone.stem
    assert torch.equal(stem.conv.weight, torch.from_numpy(convs[0]["weight"]))
    assert torch.equal(stem.bn.running_var, torch.from_numpy(convs[0]["var"]))


def test_published_weights_need_the_published_width_and_depth():
    from bof.config import TrainConfig, build
    from bof.errors import ConfigError

    model = {"arch": "yolov3", "backbone": "darknet53", "pretrained": "imagenet", "width": 0.5}
    with pytest.raises(ConfigError, match="published ImageNet weights are for width 1 and depth 1"):
        build(TrainConfig, {"model": model})


def test_a_yolov3_from_darknets_weights_takes_their_input_rgb_in_0_1():
    """Darknet trained its weights on RGB in [0, 1], not ImageNet-normalised input: the backbone of
    a YOLOv3 started from them sees the image as it is (one from `bof pretrain`, normalised)."""
    from bof.config import TrainConfig, build
    from bof.models import build_detector

    def backbone_input(pretrained):
        model = {"arch": "yolov3", "backbone": "darknet53", "pretrained": pretrained, "input_size": 64}
        config = build(TrainConfig, {"model": model})
        detector = build_detector(config, num_classes=3, load_published_weights=False).eval()
        seen = []
        detector.raw_outputs = lambda batch, inner=detector.raw_outputs: seen.append(batch) or inner(batch)
        with torch.no_grad():
            detector.detect([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))])
        return seen[0][0]

    darknet, pipeline = backbone_input("imagenet"), backbone_input(None)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert darknet.min() >= 0 and darknet.max() <= 1
    torch.testing.assert_close(pipeline * std + mean, darknet)


def test_a_users_digest_must_be_whole_and_agree_with_a_pinned_one(hub, capsys):
    assert main(["fetch-backbone", "darknet53", "--sha256", "ab"]) == 2
    assert capsys.readouterr().err == (
        "bof fetch-backbone: error: --sha256 must be the 64 hex digits of a SHA-256, got 'ab'\n"
    )
    assert main(["fetch-backbone", "resnet50", "--sha256", "f" * 64]) == 2
    assert "contradicts the pinned 0676ba61" in capsys.readouterr().err


def test_a_training_from_published_weights_records_their_digest(hub, tiny_config, tmp_path):
    """run.json and the checkpoint name the published file a run started from (its SHA-256): a
    resume from other weights at the same place starts over, as for a `bof pretrain` backbone."""
    from bof.engine import distributed
    from bof.engine.train import Trainer

    hub.mkdir(parents=True)
    write_darknet_file(hub / "darknet53.conv.74", np.random.default_rng(3))
    _, config = tiny_config("yolov3", ("model.width=1", "model.depth=1", "model.pretrained=imagenet"))
    trainer = Trainer(config, tmp_path / "run", distributed.setup("cpu"), progress=False)
    assert trainer.pretrained_sha256 == digest(hub / "darknet53.conv.74")
    assert trainer.checkpoint_extra()["pretrained_sha256"] == trainer.pretrained_sha256
