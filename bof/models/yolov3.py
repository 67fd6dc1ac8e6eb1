"""YOLOv3 with a Darknet-53 backbone [16], in torchvision's detection-model shape.

``model(images, targets)`` returns a dict of named losses in training mode and, in eval
mode, one ``{"boxes", "scores", "labels"}`` dict per image in that image's own pixels.
Training images arrive already resized to the batch's square size (random shapes pick
it); test images of any size are resized to ``test_size`` (``input_size`` unless set) here
and the boxes mapped back. Images are float in [0, 1]; normalisation happens inside.

Anchors are fixed pixel sizes, whatever the input size, as in Darknet and the authors'
GluonCV ``yolo3_darknet53`` (its ``anchors`` are constants of the network): random shapes
therefore change which anchor and level a box is assigned to, part of what that trick
does. The paper's nine anchors are the default; ``bof anchors`` computes k-means anchors
for other data and sizes. They are a buffer of the model, so ``model.pt`` carries them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from bof.models.darknet import Darknet53, conv_bn, scaled_channels
from bof.models.yolo_loss import decode, yolo_loss

# The paper's (w, h) in input pixels, level-major (strides 8, 16, 32): YOLOv3 [16] and
# GluonCV's yolo3_darknet53_voc/coco, ``anchors=[[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]``
PAPER_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
ANCHORS_PER_LEVEL = 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DetectionBlock(nn.Module):
    """Five alternating 1x1/3x3 convolutions (the route to the next scale), then a 3x3 tip."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(in_channels, channels, 1),
            conv_bn(channels, channels * 2, 3),
            conv_bn(channels * 2, channels, 1),
            conv_bn(channels, channels * 2, 3),
            conv_bn(channels * 2, channels, 1),
        )
        self.tip = conv_bn(channels, channels * 2, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        route = self.body(x)
        return route, self.tip(route)


class YOLOv3(nn.Module):
    honours_box_weights = True  # yolo_loss reads target["weights"] (mixup, §3.1)

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        depth: float = 1.0,
        input_size: int = 416,
        test_size: int | None = None,
        anchors: Sequence[Sequence[float]] = PAPER_ANCHORS,
        label_smoothing: float = 0.0,
        ignore_iou: float = 0.7,
        objectness_prior: float | None = None,
        score_threshold: float = 0.01,
        nms_iou: float = 0.45,
        nms_topk: int = 400,
        detections_per_image: int = 100,
        imagenet_normalized: bool = True,
    ):
        """``imagenet_normalized``: the backbone takes ImageNet-normalised input (bof's and GluonCV's
        pretraining); Darknet's own weights take RGB in [0, 1] as it is."""
        super().__init__()
        if len(anchors) != 3 * ANCHORS_PER_LEVEL:
            raise ValueError(f"YOLOv3 needs {3 * ANCHORS_PER_LEVEL} anchors (3 per level), got {len(anchors)}")
        self.num_classes = num_classes
        self.input_size = input_size
        self.test_size = test_size or input_size
        self.label_smoothing = label_smoothing
        self.ignore_iou = ignore_iou
        self.score_threshold, self.nms_iou, self.nms_topk, self.detections_per_image = (
            score_threshold,
            nms_iou,
            nms_topk,
            detections_per_image,
        )
        self.backbone = Darknet53(width=width, depth=depth)
        c3, c4, c5 = self.backbone.out_channels
        w512, w256, w128 = (scaled_channels(c, width) for c in (512, 256, 128))
        outputs = 3 * (5 + num_classes)
        self.blocks = nn.ModuleList(
            [DetectionBlock(c5, w512), DetectionBlock(c4 + w256, w256), DetectionBlock(c3 + w128, w128)]
        )
        self.laterals = nn.ModuleList([conv_bn(w512, w256, 1), conv_bn(w256, w128, 1)])
        self.heads = nn.ModuleList([nn.Conv2d(2 * c, outputs, 1) for c in (w512, w256, w128)])
        if objectness_prior is not None:
            self.init_objectness(objectness_prior)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(-1, 2))  # [9, 2] (w, h)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet_normalized else ((0.0,) * 3, (1.0,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def init_objectness(self, prior: float) -> None:
        """Start every objectness score at ``prior`` instead of 0.5 (bias ``logit(prior)``).

        Not in the reference, which starts from zero biases and relies on warmup to survive
        the flood of negative gradients (§3.4). Small CPU presets set it so that a few
        minutes of training reach non-trivial mAP; every run of a preset shares it.
        """
        for head in self.heads:
            bias = head.bias.view(3, 5 + self.num_classes)
            bias[:, 4] = math.log(prior / (1 - prior))

    def raw_outputs(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Per level (strides 8, 16, 32) ``[B, 3, 5 + K, H_l, W_l]`` for a normalised batch."""
        c3, c4, c5 = self.backbone(batch)
        outputs, x = [], c5
        for index, skip in enumerate((None, c4, c3)):
            if skip is not None:
                x = torch.cat([F.interpolate(self.laterals[index - 1](x), scale_factor=2, mode="nearest"), skip], dim=1)
            x, tip = self.blocks[index](x)
            out = self.heads[index](tip)
            outputs.append(out.view(out.shape[0], 3, 5 + self.num_classes, *out.shape[-2:]))
        return outputs[::-1]

    def forward(self, images: Sequence[torch.Tensor] | torch.Tensor, targets: Sequence[dict] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("YOLOv3 needs targets in training mode")
            batch = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
            size = batch.shape[-1]
            predictions = self.raw_outputs((batch - self.mean) / self.std)
            return yolo_loss(
                predictions,
                targets,
                self.anchors,
                size,
                label_smoothing=self.label_smoothing,
                ignore_iou=self.ignore_iou,
            )
        return self.detect(images)

    @torch.no_grad()
    def detect(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        size = self.test_size
        original = [image.shape[-2:] for image in images]
        batch = torch.stack(
            [
                F.interpolate(
                    image[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
                )[0]
                for image in images
            ]
        )
        predictions = self.raw_outputs((batch - self.mean) / self.std)
        anchors = self.anchors
        boxes, scores = [], []
        for level, prediction in enumerate(predictions):
            prediction = prediction.float()
            boxes.append(
                decode(prediction, anchors[3 * level : 3 * level + 3], size / prediction.shape[-2]).reshape(
                    len(images), -1, 4
                )
            )
            objectness = prediction[:, :, 4].sigmoid()[:, :, None]
            class_scores = (objectness * prediction[:, :, 5:].sigmoid()).permute(0, 1, 3, 4, 2)
            scores.append(class_scores.reshape(len(images), -1, self.num_classes))
        boxes, scores = torch.cat(boxes, dim=1), torch.cat(scores, dim=1)
        results = []
        for index, (height, width) in enumerate(original):
            detections = self.postprocess(boxes[index].clamp(0, size), scores[index])
            scale = torch.tensor([width / size, height / size, width / size, height / size], device=boxes.device)
            detections["boxes"] = detections["boxes"] * scale
            results.append(detections)
        return results

    def postprocess(self, boxes: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-class NMS over (box, class) pairs: score >= threshold, top-k, IoU, keep."""
        candidate, label = torch.nonzero(scores >= self.score_threshold, as_tuple=True)
        candidate_scores = scores[candidate, label]
        top = candidate_scores.topk(min(self.nms_topk, len(candidate_scores))).indices
        candidate, label, candidate_scores = candidate[top], label[top], candidate_scores[top]
        keep = batched_nms(boxes[candidate], candidate_scores, label, self.nms_iou)[: self.detections_per_image]
        return {"boxes": boxes[candidate[keep]], "scores": candidate_scores[keep], "labels": label[keep]}
