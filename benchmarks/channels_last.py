"""Why CPU training keeps the default (contiguous) memory layout: channels-last's speed and exactness.

For YOLOv3 and Faster R-CNN at the mini preset's sizes (benchmarks/train_flops.py's batches, one
thread), side by side on the same batches:
  speed      the median training step with contiguous weights and with channels-last weights
  exactness  each float32 step's gradients against a float64 step's on the same batch and the
             same sampler draws: the relative error of the worst parameter's gradient and the
             median over parameters, and the largest relative difference of a loss term; then the
             backbone alone (a fixed random image batch, a fixed random projection of its feature
             maps as the loss), where no discrete choice (anchor matching, sampling, NMS) can flip
             between layouts: what is left there is the kernels' rounding

    python benchmarks/channels_last.py [--batches 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile

import torch
from train_flops import mini_config, mini_devkit, prepared, timed

from bof.engine.train import move

CPU = torch.device("cpu")


def as_double(value):
    if torch.is_tensor(value):
        return value.double() if value.is_floating_point() else value
    if isinstance(value, list):
        return [as_double(v) for v in value]
    if isinstance(value, dict):
        return {k: as_double(v) for k, v in value.items()}
    return value


def losses_and_gradients(model, images, targets):
    torch.manual_seed(5)  # Faster R-CNN's samplers draw from the global stream: the same draws for each model
    losses = model(images, targets)
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    gradients = {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.item() for k, v in losses.items()}, gradients


def errors(step, reference) -> tuple[float, float, float]:
    """(worst parameter's relative gradient error, median over parameters, worst loss term's), of
    one ``losses_and_gradients`` result against another."""
    (losses, gradients), (reference_losses, reference_gradients) = step, reference
    relative = [
        ((gradients[name] - g).norm() / g.norm().clamp_min(1e-30)).item() for name, g in reference_gradients.items()
    ]
    loss = max(abs(losses[k] - v) / max(abs(v), 1e-30) for k, v in reference_losses.items())
    return max(relative), statistics.median(relative), loss


def feature_maps(backbone, images) -> list[torch.Tensor]:
    """The backbone's outputs as a list (Faster R-CNN's FPN returns a dict, Darknet a tuple)."""
    features = backbone(images)
    return list(features.values()) if isinstance(features, dict) else list(features)


def backbone_step(backbone, images, projections):
    features = feature_maps(backbone, images)
    loss = sum((f * w).sum() for f, w in zip(features, projections, strict=True))
    backbone.zero_grad(set_to_none=True)
    loss.backward()
    return {"projection": loss.item()}, {
        n: p.grad.double() for n, p in backbone.named_parameters() if p.grad is not None
    }


def backbone_errors(model) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``errors`` of the contiguous and the channels-last backbone against float64, in training mode."""
    backbone = model.backbone if hasattr(model, "backbone") else model.detector.backbone
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 96, 96, generator=generator)
    with torch.no_grad():
        shapes = [f.shape for f in feature_maps(copy.deepcopy(backbone), images)]
    projections = [torch.randn(shape, generator=generator) for shape in shapes]
    reference = backbone_step(copy.deepcopy(backbone).double(), images.double(), [w.double() for w in projections])
    contiguous = errors(backbone_step(copy.deepcopy(backbone), images, projections), reference)
    last = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
    return contiguous, errors(backbone_step(last, images, projections), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3, help="batches compared against float64")
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each layout")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        devkit = mini_devkit(folder)
        for detector in ("yolov3", "frcnn_r50"):
            config = mini_config(detector, devkit)
            model, _, batches = prepared(config, max(args.batches, args.steps + 1))
            for index, batch in enumerate(batches[: args.batches]):
                images, targets = move(*batch, CPU)
                reference = losses_and_gradients(copy.deepcopy(model).double(), as_double(images), as_double(targets))
                contiguous = errors(losses_and_gradients(copy.deepcopy(model), images, targets), reference)
                last = copy.deepcopy(model).to(memory_format=torch.channels_last)
                channels_last = errors(losses_and_gradients(last, images, targets), reference)
                print(
                    f"{detector:10} batch {index}: against float64, gradient error worst / median, loss error: "
                    f"contiguous {contiguous[0]:.1e} / {contiguous[1]:.1e}, {contiguous[2]:.1e}; "
                    f"channels-last {channels_last[0]:.1e} / {channels_last[1]:.1e}, {channels_last[2]:.1e}"
                )
            contiguous, channels_last = backbone_errors(model)
            print(
                f"{detector:10} backbone alone: against float64, gradient error worst / median, loss error: "
                f"contiguous {contiguous[0]:.1e} / {contiguous[1]:.1e}, {contiguous[2]:.1e}; "
                f"channels-last {channels_last[0]:.1e} / {channels_last[1]:.1e}, {channels_last[2]:.1e}"
            )
            seconds = {}
            for layout in ("contiguous", "channels-last"):
                net = copy.deepcopy(model)
                if layout == "channels-last":
                    net = net.to(memory_format=torch.channels_last)
                optimizer = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)

                def step(batch, net=net, optimizer=optimizer):
                    images, targets = move(*batch, CPU)
                    loss = sum(net(images, targets).values())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

                step(batches[0])  # warm-up
                seconds[layout] = statistics.median(timed(lambda b=b: step(b)) for b in batches[1 : args.steps + 1])
            print(
                f"{detector:10} step: contiguous {seconds['contiguous'] * 1000:.0f} ms, channels-last "
                f"{seconds['channels-last'] * 1000:.0f} ms ({seconds['contiguous'] / seconds['channels-last']:.2f}x)"
            )


if __name__ == "__main__":
    main()
