"""Detection and classification mixup (§3.1): exact pixels, boxes, weights, and the worker-side draw."""

from __future__ import annotations

import pytest
import torch
from conftest import make_devkit

from bof.data.detection import collate_detection
from bof.data.training import SampleKey, TrainingSet
from bof.data.voc import VOCDetection
from bof.errors import ConfigError
from bof.models.yolov3 import YOLOv3  # its loss reads the box weights
from bof.tricks.augmentation import DetectionTransform
from bof.tricks.mixup import ClassificationMixup, DetectionMixup, mix_classification, mix_detection
from bof.tricks.random import generator_for


def test_canvas_pixels_boxes_and_weights():
    img_a = torch.full((3, 4, 6), 100, dtype=torch.uint8)  # 4 x 6
    img_b = torch.full((3, 5, 3), 51, dtype=torch.uint8)  # 5 x 3
    boxes_a, boxes_b = torch.tensor([[0.0, 0, 6, 4]]), torch.tensor([[1.0, 1, 3, 5], [0.0, 0, 1, 1]])
    image, boxes, labels, weights = mix_detection(
        img_a, boxes_a, torch.tensor([2]), img_b, boxes_b, torch.tensor([0, 1]), 0.3
    )
    assert image.shape == (3, 5, 6) and image.dtype == torch.uint8
    assert image[0, 0, 0] == round(0.3 * 100 + 0.7 * 51)  # both images: 65.7 -> 66
    assert image[0, 0, 5] == 30  # only A: 0.3 * 100
    assert image[0, 4, 1] == round(0.7 * 51)  # only B: 35.7 -> 36
    assert image[0, 4, 5] == 0  # neither
    assert boxes.tolist() == [[0, 0, 6, 4], [1, 1, 3, 5], [0, 0, 1, 1]]  # geometry preserved
    assert labels.tolist() == [2, 0, 1]
    assert weights.tolist() == pytest.approx([0.3, 0.7, 0.7])


def test_lam_one_is_the_identity_and_zero_gives_the_partner():
    generator = torch.Generator().manual_seed(0)
    img_a = torch.randint(0, 256, (3, 7, 9), dtype=torch.uint8, generator=generator)
    img_b = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=generator)
    box = torch.tensor([[1.0, 2, 3, 4]])
    image, _, _, weights = mix_detection(img_a, box, torch.tensor([0]), img_b, box, torch.tensor([1]), 1.0)
    assert torch.equal(image, img_a) and weights.tolist() == [1.0, 0.0]
    image, _, _, _ = mix_detection(img_a, box, torch.tensor([0]), img_b, box, torch.tensor([1]), 0.0)
    assert torch.equal(image[:, :5, :4], img_b) and image[:, 5:].eq(0).all() and image[:, :, 4:].eq(0).all()


def test_draws():
    fixed = DetectionMixup(mode="fixed")
    assert fixed.draw(generator_for(1), 3, 10)[0] == 0.5
    beta = DetectionMixup(mode="beta", alpha=1.5, beta=1.5)
    draws = [beta.draw(generator_for(0, 0, i), 4, 10) for i in range(2000)]
    lams = torch.tensor([d[0] for d in draws if d is not None])
    partners = [d[1] for d in draws if d is not None]
    assert abs(lams.mean().item() - 0.5) < 0.02 and lams.min() > 0.0 and lams.max() < 1.0
    assert lams.var().item() == pytest.approx(1 / 16, abs=0.01)  # Beta(1.5, 1.5) variance = ab / ((a+b)^2 (a+b+1))
    assert 4 not in partners and set(partners) == set(range(10)) - {4}
    assert beta.draw(generator_for(0), 0, 1) is None  # nobody to mix with


def test_switched_off_for_the_last_epochs_and_validated():
    mixup = DetectionMixup(off_last_epochs=2)
    assert [mixup.active(epoch, 5) for epoch in range(5)] == [True, True, True, False, False]
    assert not DetectionMixup(mode="off").active(0, 5)
    with pytest.raises(ConfigError, match="beta parameters must be > 0"):
        DetectionMixup(alpha=0.0)
    with pytest.raises(ConfigError, match="mode"):
        DetectionMixup(mode="sometimes")


def identity(image, target):
    return image, target


@pytest.fixture
def two_image_devkit(tmp_path):
    return make_devkit(
        tmp_path,
        {
            "a": (40, 30, [("circle", False, False, (3, 4, 20, 25))]),
            "b": (32, 36, [("square", False, True, (5, 5, 30, 30))]),
        },
        classes=["circle", "square"],
    )


def test_blending_happens_inside_data_loader_workers(two_image_devkit):
    dataset = VOCDetection(two_image_devkit)
    training = TrainingSet(
        dataset, identity, mixup=DetectionMixup(mode="fixed", off_last_epochs=0), epochs=3, seed=7, detector=YOLOv3
    )
    keys = [SampleKey(epoch, index) for epoch in range(3) for index in range(2)]
    loader = torch.utils.data.DataLoader(
        training, sampler=keys, batch_size=2, num_workers=2, collate_fn=collate_detection
    )
    images, targets = zip(
        *[(i, t) for batch_images, batch_targets in loader for i, t in zip(batch_images, batch_targets, strict=True)],
        strict=True,
    )
    (img_a, target_a), (img_b, target_b) = dataset[0], dataset[1]
    expected, boxes, labels, weights = mix_detection(
        img_a, target_a["boxes"], target_a["labels"], img_b, target_b["boxes"], target_b["labels"], 0.5
    )
    assert torch.equal(images[0], expected)
    assert targets[0]["boxes"].tolist() == boxes.tolist() and targets[0]["labels"].tolist() == [0, 1]
    assert targets[0]["weights"].tolist() == [0.5, 0.5] and targets[0]["difficult"].tolist() == [False, True]
    assert all(t["mixed_with"] in ("a", "b") for t in targets)
    # the same keys in the main process give the same samples
    again = training[SampleKey(2, 1)]
    assert torch.equal(again[0], images[5]) and torch.equal(again[1]["boxes"], targets[5]["boxes"])


def test_unweighted_and_last_epochs_without_mixup(two_image_devkit):
    dataset = VOCDetection(two_image_devkit)
    unweighted = TrainingSet(
        dataset, identity, mixup=DetectionMixup(mode="fixed", weighted=False, off_last_epochs=1), epochs=2, seed=0
    )
    assert unweighted[SampleKey(0, 0)][1]["weights"].tolist() == [1.0, 1.0]
    image, target = unweighted[SampleKey(1, 0)]  # the last epoch: no mixup
    assert torch.equal(image, dataset[0][0]) and target["weights"].tolist() == [1.0]


def test_each_image_of_a_mixing_epoch_carries_the_mixups_loss_scale(two_image_devkit):
    """GluonCV's Faster R-CNN mix_ratio travels with the data: every image of an epoch that mixes
    has ``loss_weight`` = ``loss_scale`` (0.5), every image of one that does not has 1; so does
    every image of a run without mixup."""
    dataset = VOCDetection(two_image_devkit)
    mixup = DetectionMixup(mode="fixed", weighted=False, loss_scale=0.5, off_last_epochs=1)
    scaled = TrainingSet(dataset, identity, mixup=mixup, epochs=2, seed=0, detector=YOLOv3)
    assert [scaled[SampleKey(0, index)][1]["loss_weight"] for index in range(2)] == [0.5, 0.5]
    assert [scaled[SampleKey(1, index)][1]["loss_weight"] for index in range(2)] == [1.0, 1.0]
    plain = TrainingSet(dataset, identity, mixup=None, epochs=2, seed=0)
    assert [plain[SampleKey(0, index)][1]["loss_weight"] for index in range(2)] == [1.0, 1.0]


def test_classification_mixup_pairs_the_reversed_batch():
    images = torch.arange(3 * 2 * 1 * 1, dtype=torch.float32).view(3, 2, 1, 1)
    targets = torch.eye(3)
    mixed, soft = mix_classification(images, targets, 0.75)
    assert torch.allclose(mixed[0], 0.75 * images[0] + 0.25 * images[2])
    assert torch.allclose(soft, torch.tensor([[0.75, 0, 0.25], [0, 1.0, 0], [0.25, 0, 0.75]]))
    assert torch.allclose(soft.sum(1), torch.ones(3))
    lams = []
    for seed in range(500):
        _, soft = ClassificationMixup(alpha=0.2)(images, targets, generator_for(seed))
        lams.append(soft[0, 0].item())
    lams = torch.tensor(lams)
    assert ((lams < 0.1) | (lams > 0.9)).float().mean() > 0.6  # Beta(0.2, 0.2) is U-shaped


def _identity(image, target):
    return image, target


class _Identity(DetectionTransform):
    """No augmentation, as a bof transform (which the engine's loaders call with the batch's size)."""

    def augment(self, image, target, *, size, generator):
        return image, target


def _check_epoch(dataset, samples, mixing: bool) -> list[float]:
    """Every sample of an epoch is lam * itself + (1 - lam) * its partner with weights lam / 1 - lam
    (a swap would blend the other way round), or, when not mixing, the sample itself."""
    by_id = {s.image_id: index for index, s in enumerate(dataset.samples)}
    lams = []
    for image, target in samples:
        own_image, own = dataset[by_id[target["image_id"]]]
        if not mixing:
            assert "mixed_with" not in target and target["weights"].tolist() == [1.0] * len(own["labels"])
            assert torch.equal(image, own_image)
            continue
        assert len(own["labels"]) > 0
        lam = float(target["weights"][0])  # float32: the blend below may round 1 level differently
        partner_image, partner = dataset[by_id[target["mixed_with"]]]
        expected, _, labels, weights = mix_detection(
            own_image, own["boxes"], own["labels"], partner_image, partner["boxes"], partner["labels"], lam
        )
        assert (image.int() - expected.int()).abs().max() <= 1 and target["labels"].tolist() == labels.tolist()
        assert target["weights"].tolist() == pytest.approx(weights.tolist())
        lams.append(lam)
    return lams


def test_beta_mixup_in_the_engines_workers_switches_off_for_the_last_epochs(tiny_config, tmp_path):
    """The engine's own loaders (a new one each epoch, two workers): Beta(1.5, 1.5) mixing in
    epochs 1-2, none in the last two (off_last_epochs=2)."""
    from bof.engine.distributed import Context
    from bof.engine.train import Trainer

    _, config = tiny_config(
        "yolov3", ("optim.epochs=4", "run.workers=2", "tricks.mixup.mode=beta", "tricks.mixup.off_last_epochs=2")
    )
    trainer = Trainer(config, tmp_path / "run", Context(0, 1, 0, torch.device("cpu")), progress=False)
    trainer.training_set.augment = _Identity()  # compare pixels exactly
    lams = []
    for epoch in range(4):
        samples = [pair for images, targets in trainer.loader(epoch) for pair in zip(images, targets, strict=True)]
        assert len(samples) == trainer.iters_per_epoch * config.optim.batch_size
        lams += _check_epoch(trainer.train_data, samples, mixing=epoch < 2)
    assert len(lams) == 2 * len(samples) and len(set(lams)) == len(lams) and min(lams) > 0 and max(lams) < 1


def test_persistent_workers_see_the_epoch_in_the_key(two_image_devkit):
    """Workers that outlive an epoch cannot hold a stale mixup switch: the epoch travels in the key."""
    from bof.data.training import KeyedBatchSampler

    dataset = VOCDetection(two_image_devkit)
    training = TrainingSet(
        dataset, _identity, mixup=DetectionMixup(mode="beta", off_last_epochs=1), epochs=2, seed=3, detector=YOLOv3
    )
    batches = KeyedBatchSampler(
        torch.utils.data.SequentialSampler(range(2)), 2, epoch=0, first_iteration=0, size_at=lambda i: None
    )
    loader = torch.utils.data.DataLoader(
        training, batch_sampler=batches, num_workers=2, persistent_workers=True, collate_fn=collate_detection
    )
    first = [pair for images, targets in loader for pair in zip(images, targets, strict=True)]
    workers = loader._iterator._workers
    batches.epoch = 1
    last = [pair for images, targets in loader for pair in zip(images, targets, strict=True)]
    assert loader._iterator._workers is workers  # the same worker processes
    assert len(_check_epoch(dataset, first, mixing=True)) == 2
    _check_epoch(dataset, last, mixing=False)
