"""The sparse-matrix RoIAlign equals torchvision's operator, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as torchvision_roi_align

from bof.models.roi_align import SparseRoIAlign, roi_align


def random_rois(count, images, generator, extent=140.0):
    corner = torch.rand(count, 2, generator=generator) * extent - 10  # some start outside the image
    size = torch.rand(count, 2, generator=generator) * 80 + 0.2  # some thinner than a feature pixel
    index = torch.randint(0, images, (count, 1), generator=generator).float()
    return torch.cat([index, corner, corner + size], 1)


@pytest.mark.parametrize(
    ("output", "scale", "ratio", "shape"), [(7, 1 / 8, 2, (12, 15)), (14, 1 / 16, 2, (6, 8)), (5, 1 / 4, 3, (1, 9))]
)
def test_equals_torchvision_forward_and_backward(output, scale, ratio, shape):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 5, *shape, generator=generator, requires_grad=True)
    rois = random_rois(200, 3, generator)
    ours = roi_align(features, rois, (output, output), scale, ratio)
    theirs = torchvision_roi_align(features, rois, (output, output), scale, ratio)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5)
    upstream = torch.randn(theirs.shape, generator=generator)
    (grad_ours,) = torch.autograd.grad(ours, features, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, features, upstream)
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-4)


def test_a_box_at_the_last_pixel_and_no_boxes():
    features = torch.arange(12.0).reshape(1, 1, 3, 4)
    rois = torch.tensor([[0.0, 3.0, 2.0, 4.0, 3.0]])  # beyond the last pixel centre: clamped, as torchvision
    assert torch.allclose(
        roi_align(features, rois, (2, 2), 1.0, 2), torchvision_roi_align(features, rois, (2, 2), 1.0, 2)
    )
    assert roi_align(features, torch.zeros(0, 5), (2, 2), 1.0, 2).shape == (0, 1, 2, 2)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(features, rois, (2, 2), 1.0, 0)


def test_multiscale_pooler_equals_torchvisions():
    generator = torch.Generator().manual_seed(1)
    features = {
        name: torch.randn(2, 4, 96 // s, 128 // s, generator=generator)
        for name, s in (("0", 4), ("1", 8), ("2", 16), ("3", 32))
    }
    boxes = [random_rois(50, 1, generator, extent=90)[:, 1:].clamp(min=0) for _ in range(2)]
    for box in boxes:
        box[:, 2:] = torch.maximum(box[:, 2:], box[:, :2] + 1)
    sizes = [(96, 128)] * 2
    ours = SparseRoIAlign(["0", "1", "2", "3"], 7, 2)(features, boxes, sizes)
    theirs = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(features, boxes, sizes)
    assert torch.allclose(ours, theirs, atol=1e-5)
