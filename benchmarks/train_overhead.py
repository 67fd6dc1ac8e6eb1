"""What each freebie costs during training, measured side by side in one run.

For the small YOLOv3 and Faster R-CNN of the CPU presets, each trick is switched on alone
against the baseline. Two costs are measured separately:
  step  forward + backward + optimizer step on prepared batches (model-side tricks:
        label smoothing, SyncBN/grouped BN, cosine schedule, random shapes)
  data  producing those batches (augmentation, mixup)
Each is the median of interleaved repetitions, printed as a ratio to the baseline. The
goal is under 5 % for every trick except mixup's data cost (it decodes two images).

    python benchmarks/train_overhead.py [--iterations 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bof.config import load_config
from bof.data.detection import collate_detection
from bof.data.synth.config import SynthConfig
from bof.data.synth.writer import generate
from bof.data.training import KeyedBatchSampler
from bof.engine.build import open_split, size_schedule, training_set
from bof.engine.train import move
from bof.models import build_detector
from bof.tricks.lr_schedule import build_scheduler
from bof.tricks.sync_bn import convert_batchnorm

ARCHS = {
    "yolov3": [
        "model.arch=yolov3",
        "model.backbone=darknet53",
        "model.width=0.25",
        "model.depth=0.34",
        "model.input_size=160",
    ],
    "faster_rcnn": [
        "model.arch=faster_rcnn",
        "model.backbone=small_resnet",
        "model.width=0.25",
        "model.min_size=160",
        "model.max_size=256",
    ],
}
TRICKS = {
    "baseline": [],
    "label smoothing": ["tricks.label_smoothing=true"],
    "grouped BN (g=4)": ["tricks.batchnorm.mode=group", "tricks.batchnorm.group_size=4"],
    "cosine schedule": ["tricks.lr_schedule=cosine"],
    "random shapes": [
        "tricks.random_shapes.enabled=true",
        "tricks.random_shapes.min=128",
        "tricks.random_shapes.max=192",
        "tricks.random_shapes.interval=1",
    ],
    "no augmentation": ["tricks.augmentation=false"],
    "mixup": ["tricks.mixup.mode=beta", "tricks.mixup.off_last_epochs=0"],
}


def prepare(overrides: list[str], iterations: int):
    config = load_config(None, overrides)
    data = open_split(config.data, "train")
    dataset = training_set(config, data)
    sampler = KeyedBatchSampler(
        range(len(dataset)), config.optim.batch_size, epoch=0, first_iteration=0, size_at=size_schedule(config)
    )
    batches, started = [], time.perf_counter()
    for keys in list(sampler)[:iterations]:
        batches.append(collate_detection([dataset[key] for key in keys]))
    data_seconds = (time.perf_counter() - started) / len(batches)
    torch.manual_seed(0)
    model = convert_batchnorm(
        build_detector(config, len(data.classes)),
        config.tricks.batchnorm.mode,
        group_size=config.tricks.batchnorm.group_size,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scheduler = build_scheduler(
        optimizer, iters_per_epoch=iterations, epochs=1, mode=config.tricks.lr_schedule, step_epochs=(0.5,)
    )
    return model, optimizer, scheduler, batches, data_seconds


def step_seconds(model, optimizer, scheduler, batches) -> float:
    model.train()
    started = time.perf_counter()
    for images, targets in batches:
        images, targets = move(images, targets, torch.device("cpu"))
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        scheduler.step()
    return (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        generate(
            SynthConfig(num_images=160, image_size=160, min_object_size=12, max_objects=4, cls_images_per_class=2),
            root,
            progress=False,
        )
        base = [f"data.root={root / 'VOCdevkit'}", "optim.batch_size=8", "optim.epochs=1"]
        for arch, arch_overrides in ARCHS.items():
            print(
                f"{arch} (batch 8, {args.iterations} iterations, median of {args.repeats} interleaved repeats, torch threads {torch.get_num_threads()})"
            )
            tricks = {name: o for name, o in TRICKS.items() if not (arch == "faster_rcnn" and name == "random shapes")}
            prepared = {
                name: prepare(base + arch_overrides + overrides, args.iterations) for name, overrides in tricks.items()
            }
            steps = {name: [] for name in tricks}
            for _ in range(args.repeats):
                for name, (model, optimizer, scheduler, batches, _) in prepared.items():
                    steps[name].append(step_seconds(model, optimizer, scheduler, batches))
            base_step, base_data = statistics.median(steps["baseline"]), prepared["baseline"][4]
            for name in tricks:
                step, data = statistics.median(steps[name]), prepared[name][4]
                print(
                    f"  {name:<18} step {step * 1000:7.1f} ms ({step / base_step:5.2f}x)   data {data * 1000:7.1f} ms/batch ({data / base_data:5.2f}x)"
                )


if __name__ == "__main__":
    main()
