"""Detectors and backbones. ``MODELS`` maps ``model.arch`` to a plain builder."""

from __future__ import annotations

import torch
from torch import nn

from bof.config import TrainConfig
from bof.errors import ConfigError
from bof.models import faster_rcnn  # the module: `import bof.models.faster_rcnn as m` must give it
from bof.models.anchors import read_anchors
from bof.models.darknet import Classifier, Darknet53
from bof.models.faster_rcnn import FasterRCNN, backbone_state, resnet_body
from bof.models.published import load_published
from bof.models.yolov3 import PAPER_ANCHORS, YOLOv3
from bof.tricks.label_smoothing import default_sigmoid_eps

SOFTMAX_SMOOTHING = 0.1  # eps of Eq. 3 for softmax heads, as in [21]


def classifier(backbone: str, num_classes: int, *, width: float = 1.0, depth: float = 1.0) -> nn.Module:
    """A pretraining network: the detector's backbone plus pooling and a linear classifier."""
    if backbone == "darknet53":
        body = Darknet53(width=width, depth=depth)
        return Classifier(body, body.out_channels[-1], num_classes)
    return resnet_body(backbone, width=width, num_classes=num_classes)


def backbone_weights(network: nn.Module) -> dict:
    """The part of a pretraining network that a detector loads."""
    return network.backbone.state_dict() if isinstance(network, Classifier) else backbone_state(network)


def _check_pretrained(pretrained: dict, config: TrainConfig) -> dict:
    if pretrained.get("format") != "bof-backbone-1":
        raise ConfigError(f"model.pretrained: {config.model.pretrained} is not a `bof pretrain` backbone.pt")
    expected = {"backbone": config.model.backbone, "width": config.model.width, "depth": config.model.depth}
    found = {key: pretrained.get(key) for key in expected}
    if config.model.backbone in ("resnet50", "resnet101"):
        expected.pop("width"), expected.pop("depth"), found.pop("width"), found.pop("depth")
    if found != expected:
        raise ConfigError(f"model.pretrained: checkpoint is for {found}, the model is {expected}")
    return pretrained["weights"]


def yolov3_anchors(config: TrainConfig) -> tuple[tuple[float, float], ...]:
    """The run's anchors in pixels: the config's pairs, its `bof anchors` file, or the paper's."""
    anchors = config.model.anchors
    if anchors is None:
        return PAPER_ANCHORS
    return read_anchors(anchors) if isinstance(anchors, str) else anchors


def build_yolov3(
    config: TrainConfig, num_classes: int, pretrained: dict | None, load_published_weights: bool
) -> YOLOv3:
    darknet_weights = config.model.pretrained == "imagenet"  # Darknet's: RGB in [0, 1], not normalised
    model = YOLOv3(
        num_classes,
        width=config.model.width,
        depth=config.model.depth,
        input_size=config.model.input_size,
        test_size=config.model.test_size,
        anchors=yolov3_anchors(config),
        nms_iou=config.model.nms_iou or 0.45,
        objectness_prior=config.model.objectness_prior,
        label_smoothing=default_sigmoid_eps(num_classes) if config.tricks.label_smoothing else 0.0,
        imagenet_normalized=not darknet_weights,
    )
    if pretrained is not None:
        model.backbone.load_state_dict(_check_pretrained(pretrained, config))
    elif darknet_weights and load_published_weights:
        load_published("darknet53", model.backbone)
    return model


def build_faster_rcnn(
    config: TrainConfig, num_classes: int, pretrained: dict | None, load_published_weights: bool
) -> FasterRCNN:
    backbone = config.model.backbone
    body = None
    if pretrained is not None or config.model.pretrained == "imagenet":
        body = resnet_body(backbone, width=config.model.width, frozen_bn=backbone != "small_resnet")
        if pretrained is not None:
            body.load_state_dict(_check_pretrained(pretrained, config), strict=False)
        elif load_published_weights:
            load_published(backbone, body)
    return faster_rcnn.faster_rcnn(
        num_classes,
        backbone=backbone,
        width=config.model.width,
        min_size=config.model.min_size,
        max_size=config.model.max_size,
        label_smoothing=SOFTMAX_SMOOTHING if config.tricks.label_smoothing else 0.0,
        body=body,
        fpn=config.model.fpn,
        nms_iou=config.model.nms_iou or 0.3,
        rpn_min_size=config.model.rpn_min_size,
        rpn_test_proposals=config.model.rpn_test_proposals,
    )


MODELS = {"yolov3": build_yolov3, "faster_rcnn": build_faster_rcnn}


def build_detector(
    config: TrainConfig, num_classes: int, pretrained: dict | None = None, *, load_published_weights: bool = True
) -> nn.Module:
    """The detector of ``config``, its backbone from ``pretrained`` (a `bof pretrain` backbone) or,
    with ``model.pretrained: imagenet``, the published weights, unless not ``load_published_weights``
    (a trained model's weights are about to replace them: the same network, no file needed)."""
    return MODELS[config.model.arch](config, num_classes, pretrained, load_published_weights)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def inference_flops(model: nn.Module, image_size: tuple[int, int] = (256, 256)) -> int:
    """FLOPs of one forward pass in eval mode on a fixed random ``image_size`` image (torch's
    counter). A two-stage detector's head runs once per surviving proposal, so its count
    depends on the weights and the image: compare models of equal weights on this image."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    image = torch.rand(3, *image_size, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model([image])
    return counter.get_total_flops()
