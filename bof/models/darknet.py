"""Darknet-53 (YOLOv3's backbone, [16]) with width and depth multipliers.

Width scales every channel count, depth the number of residual blocks per stage
(1, 2, 8, 8, 4 at full size), so a small variant trains on a CPU while the
full network is exactly the paper's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

STAGE_BLOCKS = (1, 2, 8, 8, 4)
STAGE_CHANNELS = (64, 128, 256, 512, 1024)


def scaled_channels(channels: int, width: float) -> int:
    """Channels times ``width``, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(channels * width / 8)) * 8)


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1): Darknet's basic unit."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            act=nn.LeakyReLU(0.1, inplace=True),
        )
    )


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.reduce = conv_bn(channels, channels // 2, 1)
        self.expand = conv_bn(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.reduce(x))


class Darknet53(nn.Module):
    """Returns the stride-8, -16 and -32 feature maps ``[B, C_i, H / s, W / s]``.

    ``out_channels`` lists their channel counts (256, 512, 1024 at width 1).
    """

    def __init__(self, *, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        channels = [scaled_channels(c, width) for c in STAGE_CHANNELS]
        stem = scaled_channels(32, width)
        self.stem = conv_bn(3, stem, 3)
        stages, previous = [], stem
        for out, blocks in zip(channels, STAGE_BLOCKS, strict=True):
            count = max(1, round(blocks * depth))
            stages.append(nn.Sequential(conv_bn(previous, out, 3, stride=2), *[Residual(out) for _ in range(count)]))
            previous = out
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(channels[2:])
        self.width, self.depth = width, depth

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= 2:
                features.append(x)
        return features


class Classifier(nn.Module):
    """A backbone with global pooling and a linear layer, for ImageNet-style pretraining.

    ``backbone`` returns a list of feature maps; the last one is pooled.
    """

    def __init__(self, backbone: nn.Module, feature_channels: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[-1]
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))
