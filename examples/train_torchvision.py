"""Train a stock torchvision detector with the bag of freebies, on bof's synthetic VOC-layout data.

Every freebie of the paper, in your own loop (docs/library.md explains each line):
  mixup (Beta(1.5, 1.5), each box's loss weighted by its image's share)   TrainingSet + DetectionMixup
  label smoothing of the class targets (Eq. 3)                             weighted_losses(label_smoothing=)
  cosine learning rate with linear warmup                                  build_scheduler
  no weight decay on biases and norm layers                                parameter_groups
  the paper's data augmentation (full single-stage pipeline; two-stage:    SingleStageAugment / TwoStageAugment
  resize and flip), as torchvision transforms v2
  synchronized BatchNorm when run under torchrun (several processes)       convert_batchnorm

    python examples/train_torchvision.py                      # Faster R-CNN (MobileNetV3-FPN), 20 iterations
    python examples/train_torchvision.py --detector retinanet --iterations 10

No network: the detectors start from random weights (pass your own with torchvision's ``weights=``).
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn, retinanet_resnet50_fpn

from bof.data.synth.config import SynthConfig
from bof.data.synth.writer import generate
from bof.data.voc import VOCDetection
from bof.freebies import (
    DetectionMixup,
    SingleStageAugment,
    TrainingSet,
    TwoStageAugment,
    build_scheduler,
    collate_detection,
    convert_batchnorm,
    default_sigmoid_eps,
    parameter_groups,
    torchvision_inputs,
    weighted_losses,
)


def detector(name: str, classes: int, size: int) -> torch.nn.Module:
    """A stock torchvision detector (classes + background), its losses made to read the box weights."""
    if name == "retinanet":
        model = retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=classes + 1, min_size=size, max_size=size
        )
    else:  # shorter side `size`, longer at most 5/3 of it, as the paper's 600 / 1000
        model = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=classes + 1, min_size=size, max_size=size * 5 // 3
        )
    model = convert_batchnorm(model, "sync")  # synchronized BN (§3.5) under torchrun; one process: as it is
    # Eq. 3's eps for the softmax classifier; a sigmoid head takes GluonCV's min(1 / K, 1 / 40)
    smoothing = default_sigmoid_eps(classes) if name == "retinanet" else 0.1
    return weighted_losses(model, label_smoothing=smoothing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", choices=["faster_rcnn", "retinanet"], default="faster_rcnn")
    parser.add_argument("--data", type=Path, default=Path("data/example-synth"), help="made with bof synth if missing")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=192, help="input size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    if not (args.data / "VOCdevkit").is_dir():  # the same as `bof synth --out DATA --num-images 64 ...`
        generate(SynthConfig(num_images=64, image_size=160, num_classes=4, seed=args.seed), args.data, progress=False)
    dataset = VOCDetection(args.data / "VOCdevkit", [("2007", "trainval")])
    model = detector(args.detector, len(dataset.classes), args.size).train()

    # the paper's augmentation for its detector family, after mixup; mixup stays off in the last tenth
    if args.detector == "retinanet":
        augment = SingleStageAugment(args.size)
    else:
        augment = TwoStageAugment(args.size, args.size * 5 // 3)
    iters_per_epoch = len(dataset) // args.batch_size
    epochs = math.ceil(args.iterations / iters_per_epoch)
    mixup = DetectionMixup(mode="beta", alpha=1.5, beta=1.5, off_last_epochs=epochs // 10)
    training = TrainingSet(dataset, augment, mixup=mixup, epochs=epochs, seed=args.seed, detector=model)

    optimizer = torch.optim.SGD(parameter_groups(model, 1e-4, decay_norm_and_bias=False), lr=0.01, momentum=0.9)
    # cosine over exactly the iterations run, after a warmup of a tenth of them
    scheduler = build_scheduler(
        optimizer, iters_per_epoch=1, epochs=args.iterations, warmup_epochs=args.iterations / 10, mode="cosine"
    )

    step, mixed, losses = 0, 0, {}
    for epoch in range(epochs):
        training.set_epoch(epoch)  # the epoch's mixup and augmentation draws
        loader = torch.utils.data.DataLoader(
            training, batch_size=args.batch_size, shuffle=True, drop_last=True,
            num_workers=args.workers, collate_fn=collate_detection,
        )  # fmt: skip
        for images, targets in loader:
            mixed += sum(bool((target["weights"] < 1).any()) for target in targets)
            terms = model(*torchvision_inputs(images, targets))
            loss = sum(terms.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses = {name: round(value.item(), 4) for name, value in terms.items()}
            print(f"iteration {step}: lr {scheduler.get_last_lr()[0]:.5f} loss {loss.item():.4f} {losses}")
            step += 1
            if step == args.iterations:
                break
    print(json.dumps({"detector": args.detector, "iterations": step, "mixed_images": mixed, "losses": losses}))


if __name__ == "__main__":
    main()
