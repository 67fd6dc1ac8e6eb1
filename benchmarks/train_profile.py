"""Where a CPU training step of the mini preset's detectors spends its time.

For YOLOv3 and Faster R-CNN at the mini preset's sizes (the same batches as train_flops.py: its
mini_config, 96 px, batch 8, one thread as the preset's jobs run), on prepared batches:
  phases     median ms of the step's forward + loss, backward and optimizer step
  operators  torch.profiler's table of the operators by self CPU time over a few steps, and the
             share of the step's wall time that no operator accounts for (Python, dispatch)

    python benchmarks/train_profile.py [--threads 1] [--steps 8] [--rows 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile
from train_flops import mini_config, mini_devkit, prepared

from bof.engine.train import move


def phases(model, optimizer, batches) -> dict[str, float]:
    """Median milliseconds of forward + loss, backward and optimizer step."""
    times = {"forward + loss": [], "backward": [], "optimizer": []}
    for images, targets in batches:
        started = time.perf_counter()
        loss = sum(model(images, targets).values())
        forward = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        times["forward + loss"].append(forward - started)
        times["backward"].append(backward - forward)
        times["optimizer"].append(done - backward)
    return {name: 1000 * statistics.median(values[1:]) for name, values in times.items()}


def operators(model, optimizer, batches, rows: int) -> tuple[str, float]:
    """torch.profiler's operator table and the share of wall time outside any operator."""

    def step(images, targets):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for images, targets in batches[1:]:
            step(images, targets)
        wall = time.perf_counter() - started
    averages = profiler.key_averages()
    in_operators = sum(event.self_cpu_time_total for event in averages) / 1e6
    table = averages.table(sort_by="self_cpu_time_total", row_limit=rows)
    return table, max(0.0, 1 - in_operators / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the mini preset's jobs run 1)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--detectors", nargs="+", default=["yolov3", "frcnn_r50"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        devkit = mini_devkit(folder)
        for detector in args.detectors:
            config = mini_config(detector, devkit)
            model, optimizer, batches = prepared(config, args.steps + 2)
            batches = [move(images, targets, torch.device("cpu")) for images, targets in batches]
            times = phases(model, optimizer, batches)
            total = sum(times.values())
            shown = ", ".join(f"{name} {ms:.0f} ms ({ms / total:.0%})" for name, ms in times.items())
            print(f"{detector}, batch {config.optim.batch_size}: step {total:.0f} ms = {shown}")
            table, outside = operators(model, optimizer, batches, args.rows)
            print(f"  wall time outside any operator (Python, dispatch): {outside:.0%}")
            print(table)


if __name__ == "__main__":
    main()
