"""Faster R-CNN [17] from torchvision's parts, with the freebies in its losses.

The freebies enter the losses the way a user adds them to their own torchvision detector:
``bof.models.weighted.weighted_losses`` with GluonCV's losses (every sampled anchor and proposal
weighted by its ground truth's mixup weight, label smoothing over the K + 1 softmax classes (§3.2),
smooth-L1 beta 1 in the RoI head, no RPN anchor crossing the border sampled).

The model is assembled as torchvision's ``GeneralizedRCNN`` from its public classes: by
default the paper's network, GluonCV's C4 Faster R-CNN (ResNet-50/101 to stride 16,
RoIAlign, the ResNet's last stage as box head), or torchvision's FPN variant; a narrow
ResNet stands in for CPU presets. Labels are 0-based outside (as everywhere in ``bof``)
and shifted past the background class inside.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50, resnet101
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from bof.models.roi_align import SparseRoIAlign
from bof.models.weighted import weighted_losses

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class SmallResNet(nn.Module):
    """A narrow ResNet (one BasicBlock a stage, channels 64-512 times ``width``) for CPU
    presets, with torchvision ResNet's layer names so the same FPN and loading code apply."""

    def __init__(self, *, width: float = 0.25, num_classes: int = 1000):
        super().__init__()
        channels = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, channels[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, previous = [], channels[0]
        for index, out in enumerate(channels):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or previous != out:
                downsample = nn.Sequential(nn.Conv2d(previous, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            layers.append(nn.Sequential(BasicBlock(previous, out, stride, downsample)))
            previous = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        self.stage_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet_body(name: str, *, width: float = 0.25, num_classes: int = 1000, frozen_bn: bool = False) -> nn.Module:
    """The classification network whose body a Faster R-CNN backbone reuses."""
    norm = {"norm_layer": FrozenBatchNorm2d} if frozen_bn else {}
    if name == "resnet50":
        return resnet50(num_classes=num_classes, **norm)
    if name == "resnet101":
        return resnet101(num_classes=num_classes, **norm)
    if name == "small_resnet":
        return SmallResNet(width=width, num_classes=num_classes)
    raise ValueError(f"unknown Faster R-CNN backbone {name!r}")


def stage_channels(body: nn.Module) -> list[int]:
    return [
        layer[-1].conv2.out_channels if isinstance(layer[-1], BasicBlock) else layer[-1].conv3.out_channels
        for layer in (body.layer1, body.layer2, body.layer3, body.layer4)
    ]


class FasterRCNN(nn.Module):
    """torchvision's ``GeneralizedRCNN`` with weighted, smoothed losses and 0-based labels."""

    honours_box_weights = True  # its losses read target["weights"] (bof.models.weighted)

    def __init__(self, detector: GeneralizedRCNN):
        super().__init__()
        self.detector = detector
        self.register_load_state_dict_pre_hook(_predictor_keys)

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[dict] | None = None):
        if targets is not None:
            targets = [
                {
                    "boxes": t["boxes"].as_subclass(torch.Tensor).float(),
                    "labels": t["labels"].long() + 1,
                    "weights": t.get("weights", torch.ones(len(t["labels"]))).float(),
                }
                for t in targets
            ]
        output = self.detector(list(images), targets)
        if self.training:
            return output
        return [{**detections, "labels": detections["labels"] - 1} for detections in output]


def _predictor_keys(module, state_dict, prefix, *args) -> None:
    """Weights saved before 2026-12-04 held the box predictor one level down (a wrapper that kept
    its outputs, now a forward hook): ``...box_predictor.predictor.*`` -> ``...box_predictor.*``."""
    old = f"{prefix}detector.roi_heads.box_predictor.predictor."
    for key in [key for key in state_dict if key.startswith(old)]:
        state_dict[f"{prefix}detector.roi_heads.box_predictor." + key[len(old) :]] = state_dict.pop(key)


class CellCentredAnchors(AnchorGenerator):
    """torchvision's anchors, centred in their feature-map cell (``stride / 2``) instead of on
    its top-left corner, as GluonCV's ``RPNAnchorGenerator`` (py-faster-rcnn's base anchor
    centred at 7.5 of 16 in the inclusive frame). It matters with the border rule: a corner-
    centred first column always crosses the image border."""

    def grid_anchors(self, grid_sizes, strides):
        anchors = super().grid_anchors(grid_sizes, strides)
        return [
            level + torch.stack([stride[1], stride[0], stride[1], stride[0]]).to(level) / 2
            for level, stride in zip(anchors, strides, strict=True)
        ]


class Res5Head(nn.Module):
    """The box head of a C4 Faster R-CNN: the ResNet's last stage on the pooled RoIs, then
    global average pooling ([N, C, 14, 14] -> [N, C5]), as GluonCV's ``top_features``."""

    def __init__(self, layer4: nn.Module, out_channels: int):
        super().__init__()
        self.layer4 = layer4
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.layer4(x), 1), 1)


def c4_features(body: nn.Module) -> nn.Sequential:
    """The ResNet up to its stride-16 stage (conv1 .. layer3), as GluonCV's ``features``."""
    features = nn.Sequential(
        OrderedDict(
            (name, getattr(body, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        )
    )
    features.out_channels = stage_channels(body)[2]
    return features


def _init_predictor(predictor: FastRCNNPredictor) -> FastRCNNPredictor:
    """GluonCV's initialisation of the two dense layers: Normal(0.01) for classes, Normal(0.001) for boxes."""
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    return predictor


def _c4_parts(body: nn.Module, small: bool):
    """The paper's C4 network: features at stride 16, 15 anchors a position, 14 x 14 RoIAlign and
    the ResNet's last stage as the box head."""
    features = c4_features(body)
    sizes = (16, 32, 64, 128, 256) if small else (32, 64, 128, 256, 512)  # GluonCV: 16 x (2, 4, 8, 16, 32)
    rpn_anchors = CellCentredAnchors((sizes,), ((0.5, 1.0, 2.0),))
    pooler = SparseRoIAlign(["0"], output_size=14, sampling_ratio=2)
    return features, rpn_anchors, pooler, Res5Head(body.layer4, stage_channels(body)[3])


def _rpn(features: nn.Module, anchors, *, small: bool, test_proposals: int, min_size: float) -> RegionProposalNetwork:
    """GluonCV's RPN: 256 anchors sampled an image (half positive), NMS at 0.7, 12000 -> 2000
    proposals in training and 6000 -> ``test_proposals`` in testing (CPU presets: fewer)."""
    proposals = (dict(training=2000, testing=1000), dict(training=500, testing=test_proposals))
    if not small:
        proposals = (dict(training=12000, testing=6000), dict(training=2000, testing=test_proposals))
    rpn = RegionProposalNetwork(
        anchors,
        RPNHead(features.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=proposals[0],
        post_nms_top_n=proposals[1],
        nms_thresh=0.7,
    )
    rpn.min_size = max(min_size, 1e-3)
    return rpn


def faster_rcnn(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    width: float = 0.25,
    min_size: int = 600,
    max_size: int = 1000,
    label_smoothing: float = 0.0,
    body: nn.Module | None = None,
    fpn: bool = False,
    nms_iou: float = 0.3,
    rpn_min_size: float = 16.0,
    rpn_test_proposals: int = 300,
    trainable_layers: int = 3,
) -> FasterRCNN:
    """Faster R-CNN for ``num_classes`` object classes, the paper's by default.

    The default is the network the paper's Faster R-CNN numbers come from, GluonCV's
    ``faster_rcnn_resnet50_v1b_voc`` (``resnet101_v1d_coco`` for R101): a ResNet C4 backbone
    (stride 16), an RPN of 15 anchors per position (sizes 32-512, ratios 1:2, 1:1, 2:1),
    14 x 14 RoIAlign, the ResNet's last stage as the box head, 128 RoIs sampled per image
    (a quarter positive). ``fpn=True`` builds torchvision's FPN variant instead. VOC's test
    settings are the defaults (``nms_iou`` 0.3, RPN proposals at least ``rpn_min_size`` =
    16 px, 300 kept); GluonCV's COCO models use 0.5, 0 and 1000.

    ``body`` is the (pretrained) classification network; without it a fresh one is built.
    The paper-scale backbones freeze BN (GluonCV ``use_global_stats=True``) and the first
    ``5 - trainable_layers`` stages (conv1 and layer1); the small CPU backbone trains everything.
    """
    small = backbone == "small_resnet"
    if body is None:
        body = resnet_body(backbone, width=width, frozen_bn=not small)
    if not small:
        trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        for name, parameter in body.named_parameters():
            parameter.requires_grad_(any(name.startswith(layer) for layer in trainable))
    features, rpn_anchors, pooler, box_head = _fpn_parts(body, small) if fpn else _c4_parts(body, small)
    rpn = _rpn(features, rpn_anchors, small=small, test_proposals=rpn_test_proposals, min_size=rpn_min_size)
    roi_heads = RoIHeads(
        pooler,
        box_head,
        _init_predictor(FastRCNNPredictor(box_head.out_channels, num_classes + 1)),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=128,
        positive_fraction=0.25,
        bbox_reg_weights=None,  # (10, 10, 5, 5): GluonCV's box stds (0.1, 0.1, 0.2, 0.2)
        score_thresh=1e-4,  # GluonCV's box_nms valid_thresh
        nms_thresh=nms_iou,
        detections_per_img=100,
    )
    transform = GeneralizedRCNNTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD)
    detector = GeneralizedRCNN(features, rpn, roi_heads, transform)
    return FasterRCNN(weighted_losses(detector, label_smoothing=label_smoothing, losses="gluoncv"))


def _fpn_parts(body: nn.Module, small: bool):
    """torchvision's FPN variant: features, anchors, pooler and a two-layer MLP box head."""
    fpn_channels, representation = (64, 256) if small else (256, 1024)
    features = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=stage_channels(body),
        out_channels=fpn_channels,
    )
    sizes = ((16,), (32,), (64,), (128,), (256,)) if small else ((32,), (64,), (128,), (256,), (512,))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    pooler = SparseRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(fpn_channels * 7 * 7, representation)
    box_head.out_channels = representation
    return features, anchors, pooler, box_head


def backbone_state(body: nn.Module) -> OrderedDict:
    """The body's weights without its classification layer (what a detector loads)."""
    return OrderedDict((k, v) for k, v in body.state_dict().items() if not k.startswith("fc."))
