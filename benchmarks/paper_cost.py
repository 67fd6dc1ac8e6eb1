"""What a paper preset costs on one 8-GPU node: an estimate from counted FLOPs, not a measurement.

No GPU has been lent to this project's sessions, so README's cost of `voc` and `coco` comes from
here. For every job of the preset's DAG (the trainings `snakemake -n` lists, and the ImageNet
pretrainings of Tables 5-6 where the preset has them) it counts, with torch's FlopCounterMode on
this CPU, the FLOPs of one image's training step (forward + backward) of the job's network at the
job's input sizes, and of one image's inference for validation, and multiplies them by the
images a job sees:

    train FLOPs  = epochs x training images x (mean over the input sizes of a step's FLOPs / image)
    val FLOPs    = validations x validation images x inference FLOPs / image

Assumptions (each printed with the result):
  * the dataset sizes below (VOC07+12 trainval, COCO train2017, ImageNet-1k; their official counts);
  * two-stage images are 4:3 landscape (VOC's and COCO's typical 500x375 / 640x480) resized by the
    preset's min/max size; the RPN keeps its full count of proposals (2,000 in training, the
    preset's test count; its NMS off and its box deltas zero while counting), an upper bound that
    a trained RPN reaches, where random weights would give a count of chance;
  * YOLOv3's random shapes are drawn uniformly from the preset's range (its FLOPs averaged);
  * time = FLOPs / (8 GPUs x a sustained rate per GPU); the rate is the unknown: the table shows
    several. Data loading, evaluation's NMS and mAP, and checkpointing are not counted.

    python benchmarks/paper_cost.py [--preset config/voc.yaml] [--rates 10 30 100]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision import tv_tensors
from train_flops import FLOP_MAPPING

from bof.config import TrainConfig, build, to_dict
from bof.models import build_detector, classifier
from bof.pipeline import matrix
from bof.tricks.random_shapes import shape_range

ROOT = Path(__file__).resolve().parent.parent

# official split sizes: (training images, validation images, classes)
DATASETS = {
    "voc": (16_551, 4_952, 20),  # VOC07 trainval 5,011 + VOC12 trainval 11,540; VOC07 test 4,952
    "coco": (117_266, 5_000, 80),  # train2017 with annotations (GluonCV's count); val2017
}
IMAGENET = (1_281_167, 50_000, 1000)  # ILSVRC-2012 train / val
ASPECT = 4 / 3  # width / height of a typical VOC or COCO image


@dataclass
class Cost:
    name: str
    jobs: int
    train_flops: float  # one job's
    val_flops: float  # one job's
    note: str

    @property
    def total(self) -> float:
        return self.jobs * (self.train_flops + self.val_flops)


def counted(function) -> int:
    with FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as counter:
        function()
    return counter.get_total_flops()


def fake_target(height: int, width: int) -> dict:
    """Three boxes of a training image: the loss's FLOPs hardly depend on them."""
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9], [0.2, 0.5, 0.35, 0.8]])
    boxes = boxes * torch.tensor([width, height, width, height])
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": torch.tensor([0, 1, 2]),
        "weights": torch.ones(3),
        "loss_weight": 1.0,
        "difficult": torch.zeros(3, dtype=torch.bool),
        "image_id": "0",
    }


def step_flops(model: torch.nn.Module, height: int, width: int) -> int:
    """FLOPs of one image's training step (forward, loss, backward)."""
    model.train()
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))

    def step():
        losses = model([image], [fake_target(height, width)])
        sum(losses.values()).backward()

    flops = counted(step)
    model.zero_grad(set_to_none=True)
    return flops


def inference_flops(model: torch.nn.Module, height: int, width: int) -> int:
    model.eval()
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return counted(lambda: model([image]))


def detector_model(config: TrainConfig, classes: int) -> torch.nn.Module:
    raw = to_dict(config)
    if raw["model"]["arch"] == "yolov3":
        raw["model"]["anchors"] = None  # k-means anchors change no FLOP
    raw["model"]["pretrained"] = None
    torch.manual_seed(0)
    model = build_detector(build(TrainConfig, raw), classes, load_published_weights=False)
    if raw["model"]["arch"] == "faster_rcnn":
        # every proposal kept, as a trained RPN's are (random box deltas would collapse many
        # to nothing): proposals are the anchors, no NMS, no size filter: the RoI head's upper bound
        rpn = model.detector.rpn
        rpn.nms_thresh, rpn.min_size = 1.0, 1e-3
        torch.nn.init.zeros_(rpn.head.bbox_pred.weight)
        torch.nn.init.zeros_(rpn.head.bbox_pred.bias)
    return model


def two_stage_size(config: TrainConfig) -> tuple[int, int]:
    """A 4:3 landscape image after the preset's resize (short side to min_size, long side capped)."""
    height = config.model.min_size
    width = min(round(height * ASPECT), config.model.max_size)
    return height, width


def job_sizes(config: TrainConfig) -> tuple[tuple[int, int], ...]:
    """The (height, width) a training image of the job takes: YOLOv3's random shapes (each equally
    likely), its fixed size, or a two-stage detector's resized 4:3 image."""
    if config.model.arch != "yolov3":
        return (two_stage_size(config),)
    shapes = config.tricks.random_shapes
    sizes = shape_range(shapes.min, shapes.max) if shapes.enabled else (config.model.input_size,)
    return tuple((size, size) for size in sizes)


def test_size(config: TrainConfig) -> tuple[int, int]:
    if config.model.arch != "yolov3":
        return two_stage_size(config)
    size = config.model.test_size or config.model.input_size
    return size, size


class Counter:
    """FLOPs a training image and a test image of one detector's network, counted once a size."""

    def __init__(self, config: TrainConfig, classes: int):
        self.model = detector_model(config, classes)
        self.train: dict[tuple[int, int], int] = {}
        self.test: dict[tuple[int, int], int] = {}

    def training_image(self, size: tuple[int, int]) -> int:
        if size not in self.train:
            self.train[size] = step_flops(self.model, *size)
        return self.train[size]

    def test_image(self, size: tuple[int, int]) -> int:
        if size not in self.test:
            self.test[size] = inference_flops(self.model, *size)
        return self.test[size]


def training_cost(preset, job: matrix.Job, counter: Counter, dataset: tuple[int, int, int]) -> Cost:
    config = matrix.train_config(preset, job)
    train_images, val_images, _ = dataset
    sizes = job_sizes(config)
    per_image = statistics.mean(counter.training_image(size) for size in sizes)
    infer = counter.test_image(test_size(config))
    every = config.run.val_every
    validations = (config.optim.epochs // every if every else 0) + 1  # and the final evaluation
    shown = f"{sizes[0][1]}x{sizes[0][0]}" + (f"..{sizes[-1][1]}x{sizes[-1][0]}" if len(sizes) > 1 else "")
    return Cost(
        f"train {job.detector}",
        1,
        config.optim.epochs * train_images * per_image,
        validations * val_images * infer,
        f"{shown} px; {per_image / 1e9:.0f} GFLOP a training image, {infer / 1e9:.0f} a test image; "
        f"{config.optim.epochs} epochs, {validations} evaluations",
    )


def pretrain_cost(preset, backbone: str, pretraining: str) -> Cost:
    config = matrix.pretrain_config(preset, backbone, pretraining)
    train_images, val_images, classes = IMAGENET
    torch.manual_seed(0)
    network = classifier(backbone, classes).train()
    image = torch.rand(1, 3, config.image_size, config.image_size)
    label = torch.tensor([0])
    per_image = counted(lambda: torch.nn.functional.cross_entropy(network(image), label).backward())
    network.eval()
    with torch.no_grad():
        infer = counted(lambda: network(image))
    return Cost(
        f"pretrain {backbone} ({pretraining})",
        1,
        config.epochs * train_images * per_image,
        config.epochs * val_images * infer,  # validated every epoch
        f"{config.image_size} px; {per_image / 1e9:.1f} GFLOP a training image; {config.epochs} epochs",
    )


def preset_costs(path: Path) -> list[Cost]:
    preset = matrix.load_preset(path)
    dataset = DATASETS[preset.dataset.kind]
    counters: dict[str, Counter] = {}
    costs = []
    for job in matrix.jobs(preset):
        if job.detector not in counters:
            counters[job.detector] = Counter(matrix.train_config(preset, job), dataset[2])
        costs.append(training_cost(preset, job, counters[job.detector], dataset))
    costs += [pretrain_cost(preset, backbone, kind) for backbone, kind in matrix.pretrain_jobs(preset)]
    merged: dict[tuple[str, str], Cost] = {}
    for cost in costs:  # jobs of one network and equal cost on one line
        key = (cost.name, cost.note)
        if key in merged:
            merged[key].jobs += cost.jobs
        else:
            merged[key] = cost
    return list(merged.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, action="append", help="default: config/voc.yaml and config/coco.yaml")
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 30, 100], help="sustained TFLOP/s per GPU")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    for path in args.preset or [ROOT / "config" / "voc.yaml", ROOT / "config" / "coco.yaml"]:
        costs = preset_costs(path)
        print(f"{path.name}: an estimate from counted FLOPs (not a measurement)")
        for cost in costs:
            print(f"  {cost.name:36} x{cost.jobs:2}  {cost.total / 1e18:8.2f} EFLOP   ({cost.note})")
        total = sum(cost.total for cost in costs)
        hours = ", ".join(f"{total / (args.gpus * rate * 1e12) / 3600:.0f} h at {rate:g}" for rate in args.rates)
        print(f"  total {total / 1e18:.1f} EFLOP -> one {args.gpus}-GPU node: {hours} TFLOP/s sustained per GPU")


if __name__ == "__main__":
    main()
