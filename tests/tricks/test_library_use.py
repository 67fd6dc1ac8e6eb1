"""The freebies as a user's library: the augmentations are transforms-v2 transforms (any image type
and box format, in v2.Compose, torch's global stream or an explicit generator), mixup runs under a
plain shuffling DataLoader (deterministic, whatever the worker count), and what would silently go
wrong raises or warns in one line."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from bof.data.detection import collate_detection
from bof.data.training import TrainingSet
from bof.models.weighted import weighted_losses
from bof.tricks.augmentation import SingleStageAugment, TwoStageAugment
from bof.tricks.mixup import DetectionMixup
from bof.tricks.random import generator_for


def sample(seed=0, height=48, width=64, format="XYXY"):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    xyxy = torch.tensor([[4.0, 6, 30, 40], [20, 10, 60, 44]])
    boxes = tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(height, width))
    boxes = F.convert_bounding_box_format(boxes, new_format=format)
    return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor([0, 1])}


class Pairs(torch.utils.data.Dataset):
    """A user's own dataset: (image, target) with only boxes and labels."""

    def __init__(self, count=6, **kwargs):
        self.samples = [sample(index, 40 + 4 * index, 50 + 2 * index, **kwargs) for index in range(count)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        image, target = self.samples[index]
        return image, dict(target)


def test_the_augmentations_compose_with_transforms_v2():
    image, target = sample()
    pipeline = v2.Compose([SingleStageAugment(32), v2.ToDtype(torch.float32, scale=True)])
    torch.manual_seed(0)
    out, result = pipeline(image, target)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and result["boxes"].canvas_size == (32, 32)
    torch.manual_seed(0)
    again, _ = pipeline(image, target)
    assert torch.equal(out, again)  # torch's global stream, as torchvision's own transforms
    assert isinstance(TwoStageAugment(), v2.Transform)


@pytest.mark.parametrize("format", ["XYWH", "CXCYWH"])
def test_any_box_format_gives_the_xyxy_result_in_its_own_format(format):
    image, xyxy = sample()
    _, other = sample(format=format)
    expected_image, expected = SingleStageAugment(40)(image, xyxy, generator=generator_for(3))
    got_image, got = SingleStageAugment(40)(image, other, generator=generator_for(3))
    assert got["boxes"].format == tv_tensors.BoundingBoxFormat[format] and got["boxes"].canvas_size == (40, 40)
    back = F.convert_bounding_box_format(got["boxes"], new_format="XYXY")
    assert torch.allclose(back, expected["boxes"], atol=1e-4) and torch.equal(got_image, expected_image)


def test_pil_and_float_images_give_the_uint8_result_in_their_own_type():
    image, target = sample()
    expected, _ = SingleStageAugment(40)(image, target, generator=generator_for(5))
    pil, _ = SingleStageAugment(40)(F.to_pil_image(image), target, generator=generator_for(5))
    assert isinstance(pil, Image.Image) and torch.equal(F.pil_to_tensor(pil), expected)
    floats, _ = SingleStageAugment(40)(image.float() / 255, target, generator=generator_for(5))
    assert floats.dtype == torch.float32 and torch.equal((floats * 255).round().to(torch.uint8), expected)


def test_wrong_inputs_are_refused_in_one_line():
    image, target = sample()
    with pytest.raises(ValueError, match=r"a float image must hold finite values in \[0, 1\], got 0..255"):
        SingleStageAugment(32)(image.float(), target)
    with pytest.raises(ValueError, match=r"a float image must hold finite values"):
        SingleStageAugment(32)(torch.full((3, 48, 64), float("nan")), target)
    with pytest.raises(TypeError, match=r"target\['masks'\] is a tensor this transform would not move"):
        SingleStageAugment(32)(image, {**target, "masks": torch.zeros(2, 48, 64)})
    with pytest.raises(TypeError, match=r"target\['boxes'\] must be a tv_tensors.BoundingBoxes"):
        SingleStageAugment(32)(image, {**target, "boxes": target["boxes"].as_subclass(torch.Tensor)})
    with pytest.raises(ValueError, match=r"canvas_size \(48, 64\) is not the image's size \(64, 48\)"):
        TwoStageAugment()(image.transpose(1, 2), target)
    with pytest.raises(TypeError, match=r"the image must be a \[3, H, W\] tensor"):
        SingleStageAugment(32)(image[0], target)


def test_a_transforms_v2_pipeline_is_a_training_sets_augment_and_is_seeded_by_the_sample():
    pipeline = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomPhotometricDistort(p=1.0)])
    training = TrainingSet(Pairs(), pipeline, mixup=None, epochs=2, seed=0)
    training.set_epoch(0)
    first = [training[index] for index in range(len(training))]
    training.set_epoch(0)
    torch.manual_seed(123)  # the global stream does not matter: each sample seeds its own draws
    again = [training[index] for index in range(len(training))]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    training.set_epoch(1)
    other = [training[index] for index in range(len(training))]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


class Weighted(torch.nn.Module):
    honours_box_weights = True


def batches(training, workers, epoch):
    training.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        training,
        batch_size=2,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_detection,
        generator=torch.Generator().manual_seed(epoch),
    )
    return [(images, targets) for images, targets in loader]


def test_mixup_under_a_plain_shuffling_data_loader_is_the_same_for_any_worker_count():
    mixup = DetectionMixup(off_last_epochs=0)
    training = TrainingSet(Pairs(), SingleStageAugment(32), mixup=mixup, epochs=2, seed=4, detector=Weighted())
    alone, pooled = batches(training, 0, 0), batches(training, 2, 0)
    mixed = [target for _, targets in alone for target in targets if (target["weights"] < 1).any()]
    assert mixed  # Beta(1.5, 1.5) mixes almost every image
    for (images_a, targets_a), (images_b, targets_b) in zip(alone, pooled, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(images_a, images_b, strict=True))
        assert all(torch.equal(a["weights"], b["weights"]) for a, b in zip(targets_a, targets_b, strict=True))
    next_epoch = batches(training, 0, 1)
    assert any(
        not torch.equal(a["weights"], b["weights"])
        for (_, ta), (_, tb) in zip(alone, next_epoch, strict=True)
        for a, b in zip(ta, tb, strict=True)
        if len(a["weights"]) == len(b["weights"])
    )


def test_targets_without_difficult_or_image_id_mix_in_any_box_format():
    training = TrainingSet(
        Pairs(format="XYWH"), SingleStageAugment(32), mixup=DetectionMixup(off_last_epochs=0), epochs=1, seed=0,
        detector=Weighted(),
    )  # fmt: skip
    training.set_epoch(0)
    image, target = training[0]
    assert len(target["labels"]) == 4 and target["weights"].tolist() != [1.0] * 4  # mixed: both images' boxes
    assert "difficult" not in target and "mixed_with" not in target


def test_a_stock_torchvision_detector_refuses_weighted_mixup_and_a_converted_one_takes_it():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    mixup = DetectionMixup(off_last_epochs=0)
    with pytest.raises(ValueError, match="but FasterRCNN does not read the weights: pass detector="):
        TrainingSet(Pairs(), SingleStageAugment(32), mixup=mixup, epochs=1, seed=0, detector=model)
    with pytest.raises(ValueError, match="but no detector was given to read the weights"):
        TrainingSet(Pairs(), SingleStageAugment(32), mixup=mixup, epochs=1, seed=0)
    TrainingSet(Pairs(), SingleStageAugment(32), mixup=mixup, epochs=1, seed=0, detector=weighted_losses(model))
    unweighted = DetectionMixup(weighted=False, off_last_epochs=0)
    TrainingSet(Pairs(), SingleStageAugment(32), mixup=unweighted, epochs=1, seed=0, detector=model)


def test_a_mixup_that_never_mixes_and_a_forgotten_set_epoch_warn():
    with pytest.warns(UserWarning, match="mixup is off for the last 20 of 2 epochs: it never mixes"):
        TrainingSet(Pairs(), SingleStageAugment(32), mixup=DetectionMixup(), epochs=2, seed=0, detector=Weighted())
    training = TrainingSet(Pairs(), SingleStageAugment(32), mixup=None, epochs=2, seed=0)
    with pytest.raises(RuntimeError, match=r"indexed by integers \(a plain DataLoader\): call set_epoch\(epoch\)"):
        training[0]
    training.set_epoch(0)
    training[0]
    with pytest.warns(UserWarning, match=r"sample 0 asked twice in epoch 0: both get the same draws; call set_epoch"):
        training[0]


def test_batch_mixup_is_a_transform_of_a_collated_batch():
    from bof.tricks.mixup import BatchMixup, mix_detection

    dataset = Pairs(format="XYWH")
    images, targets = collate_detection([dataset[index] for index in range(4)])
    mixup = BatchMixup(DetectionMixup(off_last_epochs=0), detector=Weighted())
    assert isinstance(mixup, v2.Transform)
    mixed, mixed_targets = mixup(images, targets, generator=generator_for(1))
    lam, partner = DetectionMixup(off_last_epochs=0).draw(generator_for(1), 0, 4)  # the first image draws first
    xyxy = [F.convert_bounding_box_format(target["boxes"], new_format="XYXY") for target in targets]
    expected, boxes, labels, weights = mix_detection(
        images[0], xyxy[0], targets[0]["labels"], images[partner], xyxy[partner], targets[partner]["labels"], lam
    )
    got = F.convert_bounding_box_format(mixed_targets[0]["boxes"], new_format="XYXY")  # returned as XYWH, as given
    assert torch.equal(mixed[0], expected) and torch.allclose(got, boxes)
    assert mixed_targets[0]["weights"].tolist() == pytest.approx(weights.tolist())
    assert mixed_targets[0]["boxes"].canvas_size == tuple(expected.shape[-2:])
    torch.manual_seed(5)
    first = mixup(images, targets)
    torch.manual_seed(5)
    again = mixup(images, targets)
    assert all(torch.equal(a, b) for a, b in zip(first[0], again[0], strict=True))
    with pytest.raises(ValueError, match="but no detector was given to read the weights"):
        BatchMixup(DetectionMixup(off_last_epochs=0))


def test_half_precision_images_keep_their_values():
    image, target = sample()
    ones = torch.ones(3, 48, 64, dtype=torch.float16)
    out, _ = TwoStageAugment(20, 30, flip=False)(ones, target)  # 255.999 is 256 in float16: 1.0 would wrap to 0
    assert out.dtype == torch.float16 and out.min().item() == 1.0


class Crowded(Pairs):
    """Targets with COCO's per-box iscrowd, images as PIL, boxes as XYWH."""

    def __getitem__(self, index):
        image, target = super().__getitem__(index)
        return F.to_pil_image(image), {**target, "iscrowd": torch.tensor([0, 1])}


def test_a_mixed_sample_keeps_its_types_and_every_per_box_tensor():
    training = TrainingSet(
        Crowded(format="XYWH"), lambda image, target: (image, target), mixup=DetectionMixup(off_last_epochs=0),
        epochs=1, seed=0, detector=Weighted(),
    )  # fmt: skip
    training.set_epoch(0)
    image, target = training[0]
    assert isinstance(image, Image.Image) and target["boxes"].format == tv_tensors.BoundingBoxFormat.XYWH
    assert target["iscrowd"].tolist() == [0, 1, 0, 1] and len(target["boxes"]) == 4
    assert target["boxes"].canvas_size == (image.height, image.width)


def test_a_per_box_tensor_in_only_one_of_the_pair_is_refused():
    from bof.tricks.mixup import mix_samples

    (image_a, target_a), (image_b, target_b) = sample(0), sample(1)
    with pytest.raises(ValueError, match="one image's target has 'iscrowd' and its partner's has not"):
        mix_samples(image_a, {**target_a, "iscrowd": torch.tensor([0, 0])}, image_b, target_b, 0.5)


def test_a_callable_of_image_target_size_and_generator_still_gets_the_samples_generator():
    calls = []

    def augment(image, target, *, size, generator):
        calls.append(float(torch.rand((), generator=generator)))
        return image, target

    training = TrainingSet(Pairs(), augment, mixup=None, epochs=1, seed=0)
    training.set_epoch(0)
    training[1]
    assert calls == [float(torch.rand((), generator=generator_for(0, 0, 1)))]
