"""Data augmentation (§3.3): photometric distortion, expansion, constrained crop, resize, flip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms.v2 import functional as F

from bof.tricks.augmentation import SingleStageAugment, TwoStageAugment, hflip, keep_boxes
from bof.tricks.photometric import PhotometricParams, make_photometric_params, photometric_distort
from bof.tricks.random import generator_for
from bof.tricks.ssd_crop import Expansion, Window, crop_boxes, expand_crop_resize, sample_crop


def reference_distort(image: torch.Tensor, p: PhotometricParams) -> torch.Tensor:
    """GluonCV's ``random_color_distort`` (v0.4, experimental/image.py) transcribed on an HWC
    float array with the draws of ``p`` in place of its ``np.random`` calls; rounded and
    clipped once at the end, where bof returns to uint8."""
    src = image.permute(1, 2, 0).double().numpy().copy()

    def contrast(src):
        if p.contrast is not None:
            src *= p.contrast
        return src

    def saturation(src):
        if p.saturation is not None:
            gray = src * np.array([[[0.299, 0.587, 0.114]]])
            gray = np.sum(gray, axis=2, keepdims=True)
            gray *= 1.0 - p.saturation
            src *= p.saturation
            src += gray
        return src

    def hue(src):
        if p.hue is not None:
            u, w = np.cos(p.hue * np.pi), np.sin(p.hue * np.pi)
            bt = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
            tyiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
            ityiq = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])
            t = np.dot(np.dot(ityiq, bt), tyiq).T
            src = np.dot(src, t)
        return src

    if p.brightness is not None:
        src += p.brightness
    src = hue(saturation(contrast(src))) if p.contrast_first else contrast(hue(saturation(src)))
    return torch.from_numpy(src).permute(2, 0, 1).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("seed", range(20))
def test_fused_photometric_equals_the_steps(seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, 17, 23), dtype=torch.uint8, generator=generator)
    params = make_photometric_params(generator_for(seed), p=0.7)
    got, expected = photometric_distort(image, params), reference_distort(image, params)
    error = got.int() - expected.int()
    # OpenCV's fixed-point uint8 kernel: one level at most, on a few % of pixels (4.4 % over 200
    # draws, up to 10 % in one draw, where a quantised coefficient errs one way)
    assert error.abs().max() <= 1
    assert (error != 0).float().mean() < 0.15


def test_fused_photometric_is_unbiased_over_draws():
    errors = []
    for seed in range(40):
        generator = torch.Generator().manual_seed(seed)
        image = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8, generator=generator)
        params = make_photometric_params(generator_for(seed), p=0.7)
        errors.append(
            (photometric_distort(image, params).int() - reference_distort(image, params).int()).float().mean()
        )
    assert abs(float(torch.stack(errors).mean())) < 0.01  # -0.002 over 200 draws


def test_photometric_single_steps():
    image = torch.tensor([[[10, 200]], [[20, 100]], [[30, 0]]], dtype=torch.uint8)
    assert torch.equal(photometric_distort(image, PhotometricParams()), image)
    assert photometric_distort(image, PhotometricParams(brightness=30.0)).flatten().tolist() == [
        40,
        230,
        50,
        130,
        60,
        30,
    ]
    gray = photometric_distort(image, PhotometricParams(saturation=0.0))
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    halved = photometric_distort(image, PhotometricParams(contrast=0.5))  # GluonCV: src *= alpha, no mean
    assert halved.flatten().tolist() == [5, 100, 10, 50, 15, 0]
    assert torch.equal(photometric_distort(image, PhotometricParams(hue=0.0)), image)
    turned = photometric_distort(image, PhotometricParams(hue=1.0))  # pi radians: chroma negated in YIQ
    assert not torch.equal(turned, image)
    assert torch.equal(photometric_distort(image, PhotometricParams(hue=2.0)), image)  # a full turn (rounded ityiq)
    assert photometric_distort(image, PhotometricParams(brightness=-255.0)).eq(0).all()  # clipped once, at the end


def test_each_step_applied_about_half_the_time():
    draws = [make_photometric_params(generator_for(i)) for i in range(2000)]
    for name in ("brightness", "contrast", "saturation", "hue"):
        share = sum(getattr(d, name) is not None for d in draws) / len(draws)
        assert 0.45 < share < 0.55
    assert all(-32 <= d.brightness <= 32 for d in draws if d.brightness is not None)
    assert all(0.5 <= d.contrast <= 1.5 for d in draws if d.contrast is not None)
    assert all(-18 <= d.hue <= 18 and d.hue_scale == math.pi for d in draws if d.hue is not None)


def test_expand_crop_resize_matches_resizing_the_built_canvas():
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(56.0), indexing="ij")
    image = (
        torch.stack([100 + 2 * xs, 50 + 3 * ys, 200 - xs - ys]).round().to(torch.uint8)
    )  # smooth: differences come from placement only
    placement = Expansion(left=20, top=12, canvas_width=120, canvas_height=80)
    fill = (1.0, 2.0, 3.0)
    canvas = torch.tensor(fill).to(torch.uint8)[:, None, None].repeat(1, 80, 120)
    canvas[:, 12:52, 20:76] = image
    # a crop inside the image: exactly F.resize of that crop
    inside = Window(24, 14, 40, 30)
    expected = F.resize(canvas[:, 14:44, 24:64], [32, 32], antialias=True)
    assert torch.equal(expand_crop_resize(image, placement, inside, (32, 32), fill), expected)
    # crops that show the fill: the same picture, the image's edges within half an output pixel
    for crop in (Window(0, 0, 120, 80), Window(8, 4, 60, 50), Window(60, 40, 60, 40)):
        got = expand_crop_resize(image, placement, crop, (48, 48), fill)
        reference = F.resize(
            canvas[:, crop.top : crop.top + crop.height, crop.left : crop.left + crop.width], [48, 48], antialias=True
        )
        difference = (got.int() - reference.int()).abs()
        assert difference.float().mean() < 3.0
        assert (difference > 40).float().mean() < 0.1  # only a seam along the image's edge
    far = Window(100, 60, 20, 20)  # no image at all
    assert torch.equal(
        expand_crop_resize(image, placement, far, (8, 8), fill),
        torch.tensor([1, 2, 3], dtype=torch.uint8)[:, None, None].expand(3, 8, 8),
    )


def test_crop_drops_boxes_whose_centre_leaves_with_their_labels_and_weights():
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 0, 10, 10], [8, 8, 30, 30], [12, 0, 16, 4]]), format="XYXY", canvas_size=(40, 40)
    )
    window = Window(6, 0, 14, 14)  # centres (5,5) out, (19,19) out, (14,2) in
    kept, keep = crop_boxes(boxes.as_subclass(torch.Tensor), window)
    assert keep.tolist() == [False, False, True]
    assert kept.tolist() == [[6.0, 0.0, 10.0, 4.0]]
    target = {
        "boxes": boxes,
        "labels": torch.tensor([1, 2, 3]),
        "weights": torch.tensor([0.2, 0.5, 0.8]),
        "difficult": torch.tensor([True, False, False]),
        "image_id": "x",
    }
    out = keep_boxes(target, kept, keep, (14, 14))
    assert (
        out["labels"].tolist() == [3]
        and out["weights"].tolist() == [pytest.approx(0.8)]
        and out["difficult"].tolist() == [False]
    )
    assert out["boxes"].canvas_size == (14, 14) and out["image_id"] == "x"


def test_crop_sampler_respects_its_constraints():
    boxes = torch.tensor([[20.0, 20, 60, 70], [50, 10, 90, 40]])
    for seed in range(200):
        window = sample_crop(generator_for(seed), boxes, 100, 80, constraints=[(0.5, None)])
        assert (
            window.left >= 0
            and window.left + window.width <= 100
            and window.top >= 0
            and window.top + window.height <= 80
        )
        if window != Window(0, 0, 100, 80):
            assert box_iou(boxes, window.xyxy()).min() >= 0.5
        window = sample_crop(generator_for(seed), boxes, 100, 80)
        scale = math.sqrt(window.width * window.height / (100 * 80))
        assert scale >= 0.3 - 0.02
        assert 0.5 - 0.05 <= (window.width / 100) / (window.height / 80) <= 2 + 0.1
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (
            (cx >= window.left)
            & (cx < window.left + window.width)
            & (cy >= window.top)
            & (cy < window.top + window.height)
        )
        assert inside.any()


def random_sample(seed: int):
    generator = torch.Generator().manual_seed(seed)
    height, width = (
        int(torch.randint(40, 120, (1,), generator=generator)),
        int(torch.randint(40, 120, (1,), generator=generator)),
    )
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    count = int(torch.randint(0, 6, (1,), generator=generator))
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([width - 5, height - 5])
    wh = 1 + torch.rand(count, 2, generator=generator) * 30
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width, height]))], dim=1)
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": torch.arange(count),
        "difficult": torch.zeros(count, dtype=torch.bool),
        "weights": torch.linspace(0.1, 1.0, count),
        "image_id": seed,
    }
    return image, target


@pytest.mark.parametrize("seed", range(60))
def test_no_box_leaves_the_image_after_augmentation(seed):
    image, target = random_sample(seed)
    out, result = SingleStageAugment()(image, target, size=64, generator=generator_for(seed))
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    boxes = result["boxes"]
    assert boxes.canvas_size == (64, 64)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert len(result["labels"]) == len(result["weights"]) == len(result["difficult"]) == len(boxes)
    survivors = result["labels"].tolist()
    assert result["weights"].tolist() == pytest.approx(target["weights"][survivors].tolist())


def test_flip_twice_is_the_identity():
    image, target = random_sample(3)
    once_image, once = hflip(image, target)
    twice_image, twice = hflip(once_image, once)
    assert torch.equal(twice_image, image) and torch.allclose(twice["boxes"], target["boxes"])
    width = image.shape[-1]
    assert torch.allclose(once["boxes"][:, 0], width - target["boxes"][:, 2])


def test_augmentation_off_is_a_plain_resize():
    image, target = random_sample(5)
    out, result = SingleStageAugment.off()(image, target, size=32, generator=generator_for(0))
    assert torch.equal(out, F.resize(image, [32, 32], antialias=True))
    height, width = image.shape[-2:]
    scale = torch.tensor([32 / width, 32 / height, 32 / width, 32 / height])
    assert torch.allclose(result["boxes"], target["boxes"] * scale)


def test_same_generator_same_augmentation():
    image, target = random_sample(9)
    first = SingleStageAugment()(image, target, size=48, generator=generator_for(1, 2, 3))
    second = SingleStageAugment()(image, target, size=48, generator=generator_for(1, 2, 3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1]["boxes"], second[1]["boxes"])


@pytest.mark.parametrize(("height", "width"), [(375, 500), (500, 333), (300, 1200), (600, 600)])
def test_two_stage_resizes_the_shorter_side_to_600_with_the_longer_at_most_1000(height, width):
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[0.0, 0, width, height]]), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.tensor([0]),
    }
    out, result = TwoStageAugment()(image, target, generator=generator_for(0))
    short, long = sorted(out.shape[-2:])
    assert long <= 1000 and (short == 600 or long == 1000)
    assert result["boxes"].tolist() == [[0.0, 0.0, float(out.shape[-1]), float(out.shape[-2])]]


@pytest.mark.parametrize("mode", range(5))
def test_resize_gives_f_resize_pixels_on_any_layout(mode):
    from bof.tricks.augmentation import INTERPOLATIONS
    from bof.tricks.ssd_crop import resize

    interpolation, antialias = INTERPOLATIONS[mode]
    generator = torch.Generator().manual_seed(mode)
    planar = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=generator)
    channels_last = planar.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    for size in ((96, 96), (20, 71), (37, 53), (111, 13)):
        expected = F.resize(planar, list(size), interpolation=interpolation, antialias=antialias)
        for image in (planar, channels_last, channels_last[:, 3:30, 5:50]):
            reference = (
                expected
                if image.shape == planar.shape
                else F.resize(image.contiguous(), list(size), interpolation=interpolation, antialias=antialias)
            )
            assert torch.equal(resize(image, size, interpolation=interpolation, antialias=antialias), reference)


def _exact_mix(img_a, boxes_a, labels_a, img_b, boxes_b, labels_b, lam):
    """The blend as torch computed it before OpenCV did: float32, rounded half to even once."""
    height, width = max(img_a.shape[1], img_b.shape[1]), max(img_a.shape[2], img_b.shape[2])
    canvas = torch.zeros((3, height, width))
    canvas[:, : img_a.shape[1], : img_a.shape[2]] += img_a.float() * lam
    canvas[:, : img_b.shape[1], : img_b.shape[2]] += img_b.float() * (1 - lam)
    image = canvas.round_().clamp_(0, 255).to(torch.uint8)
    weights = torch.cat([torch.full((len(boxes_a),), lam), torch.full((len(boxes_b),), 1.0 - lam)])
    return image, torch.cat([boxes_a, boxes_b]).float(), torch.cat([labels_a, labels_b]), weights


@pytest.mark.parametrize("mixup", [False, True])
def test_pipeline_gives_the_exact_kernels_output_up_to_rounding(tiny_synth, monkeypatch, mixup):
    """The fast kernels (decoder layout, OpenCV colour transform and blend, channels-last resize)
    against the exact ones (float math rounded once, F.resize on planar tensors), same draws."""
    import bof.tricks.mixup as mixup_module
    import bof.tricks.photometric as photometric
    import bof.tricks.ssd_crop as ssd_crop
    from bof.data.training import SampleKey, TrainingSet
    from bof.data.voc import VOCDetection
    from bof.models.yolov3 import YOLOv3
    from bof.tricks.mixup import DetectionMixup

    dataset = VOCDetection(tiny_synth / "VOCdevkit", [("2007", "trainval")])
    mix = DetectionMixup(mode="beta", off_last_epochs=0) if mixup else None
    fast = TrainingSet(dataset, SingleStageAugment(), mixup=mix, epochs=1, seed=3, detector=YOLOv3)
    samples = [fast[SampleKey(0, index, 96)] for index in range(len(dataset))]

    def exact_colour(image, matrix, offset):
        pixels = image.reshape(3, -1).float()
        out = torch.addmm((offset + 0.5).float()[:, None], matrix.float(), pixels)
        return out.clamp_(0, 255).to(torch.uint8).reshape(image.shape)  # floor(x + 0.5)

    def planar_resize(image, size, *, interpolation, antialias):
        return F.resize(image.contiguous(), list(size), interpolation=interpolation, antialias=antialias)

    monkeypatch.setattr(photometric, "apply_color_transform", exact_colour)
    monkeypatch.setattr(ssd_crop, "resize", planar_resize)
    monkeypatch.setattr(mixup_module, "mix_detection", _exact_mix)
    exact = TrainingSet(dataset, SingleStageAugment(), mixup=mix, epochs=1, seed=3, detector=YOLOv3)
    errors = []
    for index, (image, target) in enumerate(samples):
        expected_image, expected_target = exact[SampleKey(0, index, 96)]
        assert torch.equal(target["boxes"], expected_target["boxes"])  # the same draws
        assert torch.equal(target["weights"], expected_target["weights"])
        errors.append((image.int() - expected_image.int()).abs())
    errors = torch.stack(errors)
    # one level from the colour transform; a bicubic kernel's negative lobes (sum of |weights| up
    # to ~1.7 in 2-D) can turn neighbouring +1/-1 errors into 2, and rounding adds one more
    assert errors.max() <= 3 and errors.float().mean() < 0.1
    assert (errors > 1).float().mean() < 0.001
