"""How close a CPU training step of the mini preset's detectors comes to the machine's limit.

For YOLOv3 and Faster R-CNN at the mini preset's sizes (config/mini.yaml: their widths, 96 px,
batch 8, one thread as the preset's jobs run; the batch norm of the job, as training converts it:
YOLOv3's baseline groups of 4), measured side by side in one run:
  step FLOP/s   FLOPs of one training step (forward + backward, torch's FlopCounterMode) over the
                median time of a step on prepared batches (optimizer step included)
  GEMM FLOP/s   a float32 ``torch.mm`` of 512 x 512 matrices on the same threads: what the machine's
                matrix multiply reaches; the ratio step / GEMM says how far the step is from it
  data wait     the share of a short real training (`bof train`'s loop, the preset's data-loader
                workers) spent waiting for the next batch
  channels-last the same step with the model's weights in channels-last memory (what the GPU
                path does), against the default layout
  group BN      YOLOv3's step with the grouped batch norm of before 2026-12-04 (a second variance
                pass over the batch for the running statistics), against today's

    python benchmarks/train_flops.py [--threads 1] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

import torch
from torch.utils.flop_counter import FlopCounterMode

from bof.config import TrainConfig, build, to_dict
from bof.data.detection import collate_detection
from bof.data.synth.config import SynthConfig
from bof.data.synth.writer import generate
from bof.data.training import KeyedBatchSampler
from bof.engine.build import open_split, size_schedule, training_set
from bof.engine.train import move, train
from bof.models import build_detector
from bof.pipeline import matrix
from bof.tricks.sync_bn import GroupBatchNorm2d, convert_batchnorm

ROOT = Path(__file__).resolve().parent.parent


def gemm_flops(size: int = 512, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best


def _mm_flops(a, b, *args, out_val=None, **kwargs) -> int:
    """A matrix product's FLOPs, a sparse factor counted by its non-zeros (Faster R-CNN's RoIAlign
    is one sparse product, whose backward torch's counter would count as dense)."""
    if a.is_sparse:
        return 2 * a._nnz() * b.shape[1]
    if b.is_sparse:
        return 2 * b._nnz() * a.shape[0]
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


_mm_flops._get_raw = True  # the formula gets the tensors (their sparsity), not only their shapes


def _sparse_addmm_flops(bias, a, b, *args, out_val=None, **kwargs) -> int:
    return 2 * a._nnz() * b.shape[1]


_sparse_addmm_flops._get_raw = True

FLOP_MAPPING = {torch.ops.aten.mm: _mm_flops, torch.ops.aten._sparse_addmm: _sparse_addmm_flops}


def timed(function) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def mini_config(detector: str, data_root: Path) -> TrainConfig:
    """The mini preset's baseline job of ``detector`` on the given synthetic devkit, one short epoch."""
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml")
    raw = to_dict(matrix.train_config(preset, matrix.Job(detector, "baseline", 0)))
    raw["data"] = {"format": "voc", "root": str(data_root), "train": ["2007:trainval"], "val": ["2007:test"]}
    raw["model"].update(pretrained=None, anchors=None if raw["model"]["arch"] == "yolov3" else raw["model"]["anchors"])
    raw["optim"].update(epochs=1, step_epochs=[], warmup_epochs=0.0)
    raw["run"].update(val_every=0)
    return build(TrainConfig, raw)


def variance_pass_forward(self, x: torch.Tensor) -> torch.Tensor:
    """GroupBatchNorm2d.forward before 2026-12-04: running statistics from a second pass over x."""
    batch = x.shape[0]
    if not self.training or batch <= self.group_size:
        return torch.nn.BatchNorm2d.forward(self, x)
    count = batch // self.group_size
    weight, bias = self.weight.repeat(count).view(count, -1), self.bias.repeat(count).view(count, -1)
    out = torch.cat(
        [
            torch.nn.functional.batch_norm(group, None, None, w, b, training=True, eps=self.eps)
            for group, w, b in zip(x.split(self.group_size), weight, bias, strict=True)
        ]
    )
    with torch.no_grad():
        dims = (1, *range(3, x.dim() + 1))
        statistics_ = x.float().view(count, self.group_size, *x.shape[1:])
        self.running_mean.lerp_(statistics_.mean(dim=dims).mean(0), self.momentum)
        self.running_var.lerp_(statistics_.var(dim=dims, unbiased=True).mean(0), self.momentum)
        self.num_batches_tracked += 1
    return out


def mini_devkit(folder: str | Path) -> Path:
    """A small synthetic VOC devkit at the mini preset's image size, in ``folder``."""
    root = Path(folder) / "data"
    generate(SynthConfig(num_images=80, test_fraction=0.1, image_size=96, min_object_size=16, max_objects=3,
                         cls_images_per_class=2), root, progress=False)  # fmt: skip
    return root / "VOCdevkit"


def prepared(config: TrainConfig, count: int, *, channels_last: bool = False):
    """The config's model (its batch norm converted as training converts it; weights in channels-last
    memory with ``channels_last``), an SGD optimizer and ``count`` collated training batches."""
    data = open_split(config.data, "train")
    dataset = training_set(config, data)
    sampler = KeyedBatchSampler(
        range(len(dataset)), config.optim.batch_size, epoch=0, first_iteration=0, size_at=size_schedule(config)
    )
    batches = [collate_detection([dataset[key] for key in keys]) for keys in list(sampler)[:count]]
    torch.manual_seed(0)
    model = build_detector(config, len(data.classes)).train()
    bn = config.tricks.batchnorm
    model = convert_batchnorm(model, bn.mode, group_size=bn.group_size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9), batches


def step_measure(config: TrainConfig, steps: int, *, channels_last: bool = False) -> tuple[float, float]:
    """(FLOPs of one training step, median seconds of a step) on prepared batches (`prepared`)."""
    model, optimizer, batches = prepared(config, steps + 1, channels_last=channels_last)

    def step(images, targets):
        images, targets = move(images, targets, torch.device("cpu"))
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    with FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as counter:
        step(*batches[0])
    flops = counter.get_total_flops()
    seconds = statistics.median(timed(lambda b=batch: step(*b)) for batch in batches[1:])
    return flops, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the mini preset's jobs run 1)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        devkit = mini_devkit(folder)
        peak = gemm_flops()
        print(f"GEMM (float32 torch.mm 512x512, {args.threads} thread(s)): {peak / 1e9:.1f} GFLOP/s")
        for detector in ("yolov3", "frcnn_r50"):
            config = mini_config(detector, devkit)
            flops, seconds = step_measure(config, args.steps)
            _, seconds_cl = step_measure(config, args.steps, channels_last=True)
            before = ""
            if config.tricks.batchnorm.mode == "group":
                with patch.object(GroupBatchNorm2d, "forward", variance_pass_forward):
                    _, seconds_before = step_measure(config, args.steps)
                before = f"; group BN before 2026-12-04: {seconds_before * 1000:.0f} ms ({seconds_before / seconds:.2f}x today's)"
            train(config, Path(folder) / "runs" / detector, progress=False)
            wait = json.loads((Path(folder) / "runs" / detector / "run.json").read_text())["data_wait_share"]
            achieved = flops / seconds
            print(
                f"  {detector:10} batch {config.optim.batch_size}: {flops / 1e9:6.2f} GFLOP a step, {seconds * 1000:6.0f} ms "
                f"-> {achieved / 1e9:5.1f} GFLOP/s = {achieved / peak:5.1%} of GEMM; data wait {wait:5.1%} "
                f"({config.run.workers} loader workers); channels-last weights: {seconds_cl * 1000:6.0f} ms a step "
                f"({seconds / seconds_cl:.2f}x){before}"
            )


if __name__ == "__main__":
    main()
