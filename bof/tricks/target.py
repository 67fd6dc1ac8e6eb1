"""What a detection sample's target holds, as the freebies read and write it."""

from typing import TYPE_CHECKING, Required, TypedDict

if TYPE_CHECKING:  # annotations only: the dataset modules stay importable without torch
    import torch
    from torchvision import tv_tensors

__all__ = ["Target"]


class Target(TypedDict, total=False):
    """One image's annotation. ``boxes`` and ``labels`` are required; the rest is optional.

    Labels are 0-based class indices (bof's convention; a torchvision detector keeps 0 for the
    background: ``bof.freebies.torchvision_inputs`` shifts them)."""

    boxes: Required["tv_tensors.BoundingBoxes"]  # [N, 4], any format, with the image's canvas_size
    labels: Required["torch.Tensor"]  # [N] int64
    difficult: "torch.Tensor"  # [N] bool: VOC's difficult flag (left out of VOC07 mAP)
    iscrowd: "torch.Tensor"  # [N]: COCO's crowd flag
    weights: "torch.Tensor"  # [N] float: each box's loss weight (mixup's share of its image; 1 unmixed)
    loss_weight: float  # how much the whole image's loss counts (GluonCV's Faster R-CNN mix_ratio)
    image_id: str | int
    mixed_with: str | int  # the image_id of the mixup partner
