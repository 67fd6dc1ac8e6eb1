"""Single-stage training pipeline throughput, images/s on one core, measured side by side.

Each pipeline decodes a ~500x375 JPEG and produces a 416x416 training sample with its boxes:
  bof            SingleStageAugment (photometric, expand, SSD crop, random-interpolation resize, flip)
  bof + mixup    the same after detection mixup (Beta(1.5, 1.5): two JPEGs decoded per sample)
  torchvision    a plain torchvision.transforms.v2 composition of the closest ops
                 (RandomPhotometricDistort, RandomZoomOut, RandomIoUCrop, Resize, flip, Sanitize)
  albumentations the closest composition albumentations can express (it has no SSD min-IoU
                 crop nor zoom-out: ColorJitter, Affine zoom-out, RandomSizedBBoxSafeCrop, flip),
                 when albumentations is installed (pip install albumentations)
and the two-stage (Faster R-CNN) pipeline, shorter side 600 and longer at most 1000 plus a flip,
against torchvision v2's Resize(600, max_size=1000) and albumentations' SmallestMaxSize +
LongestMaxSize. Ratios print bof over the fastest peer.

    python benchmarks/augment_speed.py [--images 64] [--samples 600] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from bof.data.synth.config import SynthConfig  # noqa: E402
from bof.data.synth.writer import generate  # noqa: E402
from bof.data.training import SampleKey, TrainingSet  # noqa: E402
from bof.data.voc import VOCDetection  # noqa: E402
from bof.models.yolov3 import YOLOv3  # noqa: E402
from bof.tricks.augmentation import IMAGENET_MEAN_255, SingleStageAugment, TwoStageAugment  # noqa: E402
from bof.tricks.mixup import DetectionMixup  # noqa: E402

SIZE = 416


def measure(pipelines: dict, count: int, samples: int, rounds: int) -> dict[str, float]:
    """images/s of each pipeline: ``rounds`` turns in which every pipeline runs ``samples /
    rounds`` samples, so that a slow spell of a shared machine hits all of them; the best turn."""
    for pipeline in pipelines.values():
        for index in range(min(8, count)):  # warm up
            pipeline(index)
    per_round = max(1, samples // rounds)
    best = dict.fromkeys(pipelines, 0.0)
    for turn in range(rounds):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            for step in range(turn * per_round, (turn + 1) * per_round):
                pipeline(step % count)
            best[name] = max(best[name], per_round / (time.perf_counter() - start))
    for name, rate in best.items():
        print(f"  {name:<16} {rate:7.1f} img/s")
    return best


def torchvision_pipeline(dataset):
    transform = v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: IMAGENET_MEAN_255, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
            v2.Resize((SIZE, SIZE), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.SanitizeBoundingBoxes(),
        ]
    )

    def run(index):
        image, target = dataset[index]
        return transform(image, target)

    return run


def albumentations_pipeline(dataset):
    import albumentations as A
    import cv2

    cv2.setNumThreads(0)
    transform = A.Compose(
        [
            A.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05, p=0.5),
            A.Affine(scale=(0.25, 1.0), keep_ratio=True, fill=IMAGENET_MEAN_255, p=0.5),
            A.RandomSizedBBoxSafeCrop(SIZE, SIZE, erosion_rate=0.0),
            A.HorizontalFlip(p=0.5),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
    )

    def run(index):
        sample = dataset.samples[index]
        image = cv2.cvtColor(cv2.imread(str(sample.image_path)), cv2.COLOR_BGR2RGB)
        return transform(image=image, bboxes=sample.boxes_xyxy, labels=sample.labels)

    return run


def two_stage_peers(dataset) -> dict:
    """Faster R-CNN's pipeline (shorter side 600, longer at most 1000, flip) in each library."""
    transform = v2.Compose([v2.Resize(600, max_size=1000, antialias=True), v2.RandomHorizontalFlip(p=0.5)])

    def torchvision_run(index):
        image, target = dataset[index]
        return transform(image, target)

    peers = {"torchvision v2": torchvision_run}
    try:
        import albumentations as A
        import cv2
    except ImportError:
        return peers
    cv2.setNumThreads(0)
    album = A.Compose(
        [A.SmallestMaxSize(600), A.LongestMaxSize(1000), A.HorizontalFlip(p=0.5)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
    )

    def albumentations_run(index):
        sample = dataset.samples[index]
        image = cv2.cvtColor(cv2.imread(str(sample.image_path)), cv2.COLOR_BGR2RGB)
        return album(image=image, bboxes=sample.boxes_xyxy, labels=sample.labels)

    peers["albumentations"] = albumentations_run
    return peers


def ratios(rates: dict[str, float], ours: list[str]) -> None:
    peers = [name for name in rates if name not in ours]
    fastest = max(peers, key=rates.get)
    print(
        "  "
        + "   ".join(f"{name} / {fastest}: {rates[name] / rates[fastest]:.2f}x" for name in ours)
        + "   (the fastest peer)"
    )
    for peer in peers:
        if peer != fastest:
            print("  " + "   ".join(f"{name} / {peer}: {rates[name] / rates[peer]:.2f}x" for name in ours))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--samples", type=int, default=600, help="per pipeline")
    parser.add_argument("--rounds", type=int, default=5, help="turns over the pipelines; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        generate(
            SynthConfig(num_images=max(args.images * 2, 8), image_size=500, cls_images_per_class=2),
            Path(folder) / "data",
            progress=False,
        )
        dataset = VOCDetection(Path(folder) / "data" / "VOCdevkit", [("2007", "trainval")])
        sizes = np.array([(s.width, s.height) for s in dataset.samples])
        print(
            f"{len(dataset)} JPEGs, mean size {sizes[:, 0].mean():.0f}x{sizes[:, 1].mean():.0f}, output {SIZE}x{SIZE}, 1 thread"
        )
        plain = TrainingSet(dataset, SingleStageAugment(), mixup=None, epochs=1, seed=0)
        mixed = TrainingSet(
            dataset, SingleStageAugment(), mixup=DetectionMixup(off_last_epochs=0), epochs=1, seed=0, detector=YOLOv3
        )
        print(f"single-stage (YOLOv3), {SIZE}x{SIZE}:")
        pipelines = {
            "bof": lambda i: plain[SampleKey(0, i, SIZE)],
            "bof + mixup": lambda i: mixed[SampleKey(0, i, SIZE)],
            "torchvision v2": torchvision_pipeline(dataset),
        }
        try:
            pipelines["albumentations"] = albumentations_pipeline(dataset)
        except ImportError:
            print("  albumentations   not installed (pip install albumentations)")
        ratios(measure(pipelines, len(dataset), args.samples, args.rounds), ["bof", "bof + mixup"])
        print("two-stage (Faster R-CNN), shorter side 600, longer at most 1000:")
        two_stage = TrainingSet(dataset, TwoStageAugment(), mixup=None, epochs=1, seed=0)
        pipelines = {"bof": lambda i: two_stage[SampleKey(0, i, SIZE)], **two_stage_peers(dataset)}
        ratios(measure(pipelines, len(dataset), args.samples, args.rounds), ["bof"])


if __name__ == "__main__":
    main()
