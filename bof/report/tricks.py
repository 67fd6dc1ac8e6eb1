"""Figures that show the tricks themselves: mixup (Figures 2-3), beta densities (Figure 4),
learning-rate schedules (Figure 6a). Every curve comes from the same functions training uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.transforms.v2 import functional as F  # noqa: E402
from torchvision.utils import draw_bounding_boxes  # noqa: E402

from bof.tricks.lr_schedule import lr_at  # noqa: E402
from bof.tricks.mixup import mix_classification, mix_detection  # noqa: E402

SOURCE_COLOURS = ("#ff3030", "#30a0ff")


def save_figure(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(path)
    return path


def _show(axis, image: torch.Tensor, title: str) -> None:
    axis.imshow(image.permute(1, 2, 0).numpy())
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def figure_mixup(
    pair_a, pair_b, path_classification: Path, path_detection: Path, *, lam_detection: float = 0.55
) -> list[Path]:
    """Figure 2 (classification mixup 0.1 : 0.9 of two resized images) and Figure 3
    (geometry-preserving detection mixup, boxes of both images kept, labelled with their weights)."""
    (image_a, target_a), (image_b, target_b) = pair_a, pair_b
    side = 256
    resized = torch.stack([F.resize(image, [side, side], antialias=True).float() for image in (image_a, image_b)])
    blended, _ = mix_classification(resized, torch.eye(2), 0.1)
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    _show(axes[0], resized[0].byte(), "image A")
    _show(axes[1], resized[1].byte(), "image B")
    _show(axes[2], blended[0].round().byte(), "classification mixup 0.1 : 0.9")
    paths = [save_figure(figure, path_classification)]

    mixed, boxes, labels, weights = mix_detection(
        image_a, target_a["boxes"], target_a["labels"], image_b, target_b["boxes"], target_b["labels"], lam_detection
    )
    sources = [0] * len(target_a["boxes"]) + [1] * len(target_b["boxes"])
    drawn = draw_bounding_boxes(
        mixed,
        boxes,
        labels=[f"{w:.2f}" for w in weights.tolist()],
        colors=[SOURCE_COLOURS[s] for s in sources],
        width=2,
    )
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    _show(axes[0], draw_bounding_boxes(image_a, target_a["boxes"], colors=SOURCE_COLOURS[0], width=2), "image A")
    _show(axes[1], draw_bounding_boxes(image_b, target_b["boxes"], colors=SOURCE_COLOURS[1], width=2), "image B")
    _show(axes[2], drawn, f"detection mixup {lam_detection:.2f} : {1 - lam_detection:.2f} (box = loss weight)")
    paths.append(save_figure(figure, path_detection))
    return paths


def beta_pdf(x: float, a: float, b: float) -> float:
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log(1 - x))


def figure_beta(
    path: Path, parameters: Sequence[tuple[float, float]] = ((0.2, 0.2), (1.0, 1.0), (1.5, 1.5), (2.0, 2.0))
) -> Path:
    """Figure 4: mixing-ratio densities; red is classification's Beta(0.2, 0.2)."""
    xs = [i / 400 for i in range(1, 400)]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for a, b in parameters:
        style = {"color": "red", "linewidth": 2} if (a, b) == (0.2, 0.2) else {}
        axis.plot(xs, [beta_pdf(x, a, b) for x in xs], label=f"Beta({a:g}, {b:g})", **style)
    axis.set_ylim(0, 3)
    axis.set_xlabel("mixing ratio lam")
    axis.set_ylabel("density")
    axis.legend()
    return save_figure(figure, path)


def figure_lr_schedules(
    path: Path,
    *,
    base_lr: float = 1e-3,
    iters_per_epoch: int = 258,
    epochs: int = 200,
    warmup_epochs: float = 4,
    step_epochs: Sequence[float] = (160, 180),
) -> Path:
    """Figure 6a: cosine and step schedules with warmup, per iteration, from ``lr_at``."""
    total = epochs * iters_per_epoch
    ts = list(range(0, total, max(1, total // 2000)))
    common = {"base_lr": base_lr, "iters_per_epoch": iters_per_epoch, "epochs": epochs, "warmup_epochs": warmup_epochs}
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot([t / iters_per_epoch for t in ts], [lr_at(t, mode="cosine", **common) for t in ts], label="cosine")
    axis.plot(
        [t / iters_per_epoch for t in ts],
        [lr_at(t, mode="step", step_epochs=step_epochs, **common) for t in ts],
        label="step",
    )
    axis.set_xlabel("epoch")
    axis.set_ylabel("learning rate")
    axis.set_title(f"warmup {warmup_epochs:g} epochs, {iters_per_epoch} iterations an epoch", fontsize=9)
    axis.legend()
    return save_figure(figure, path)
