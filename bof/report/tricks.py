"""Figures that show the tricks themselves: mixup (Figures 2-3), beta densities (Figure 4),
learning-rate schedules (Figure 6a). Every curve comes from the same functions training uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
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


Rect = tuple[float, float, float, float]
LABEL_FONT_SIZE = 16
LABEL_PAD = 2
EDGE = 2.0  # half the drawn box edge's width, and then some: a label this close covers the edge


def _overlap(a: Rect, b: Rect) -> bool:
    """Whether two (x0, y0, x1, y1) rectangles share an area (touching is not overlapping)."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _edges(box: Sequence[float]) -> list[Rect]:
    """The four drawn edges of an XYXY ``box`` as thin rectangles."""
    x0, y0, x1, y1 = box
    return [
        (x0 - EDGE, y0 - EDGE, x1 + EDGE, y0 + EDGE),
        (x0 - EDGE, y1 - EDGE, x1 + EDGE, y1 + EDGE),
        (x0 - EDGE, y0 - EDGE, x0 + EDGE, y1 + EDGE),
        (x1 - EDGE, y0 - EDGE, x1 + EDGE, y1 + EDGE),
    ]


def _candidates(box: Sequence[float], width: float, height: float) -> list[Rect]:
    """Where a ``width`` x ``height`` label may sit, best first: on the box's top edge from outside,
    then under its bottom edge, inside its top and bottom edges, beside it (left, right)."""
    x0, y0, x1, y1 = box
    xs = [x0 + (x1 - width - x0) * step / 4 for step in range(5)] if x1 - width > x0 else [x0, x1 - width]
    ys = [y0 + (y1 - height - y0) * step / 4 for step in range(5)] if y1 - height > y0 else [y0, y1 - height]
    rows = [(x, top) for top in (y0 - height, y1, y0, y1 - height) for x in xs]
    columns = [(left, y) for left in (x0 - width, x1) for y in ys]
    return [(x, y, x + width, y + height) for x, y in rows + columns]


def place_labels(
    boxes_xyxy: Sequence[Sequence[float]],
    sizes: Sequence[tuple[float, float]],
    *,
    canvas_size: tuple[int, int],
    margin: float,
) -> list[Rect]:
    """A rectangle (x0, y0, x1, y1) for the label of each box, in the image's pixels: no two
    overlap and none covers the edge of another box. ``sizes`` are the labels' (width, height);
    ``canvas_size`` is the image's (height, width), and labels may use ``margin`` pixels around it.

    Each label takes the first free place next to its box (:func:`_candidates`); a label with no
    free place goes into a column right of the margin, stacked, to be tied to its box by a line."""
    height, width = canvas_size
    placed: list[Rect] = []
    column_top = -margin
    for index, (box, (label_w, label_h)) in enumerate(zip(boxes_xyxy, sizes, strict=True)):
        others = [edge for other, box_other in enumerate(boxes_xyxy) if other != index for edge in _edges(box_other)]
        free = (
            rect
            for rect in _candidates(box, label_w, label_h)
            if rect[0] >= -margin and rect[1] >= -margin and rect[2] <= width + margin and rect[3] <= height + margin
            and not any(_overlap(rect, taken) for taken in placed + others)
        )  # fmt: skip
        rect = next(free, None)
        if rect is None:
            rect = (width + margin + 2 * EDGE, column_top, width + margin + 2 * EDGE + label_w, column_top + label_h)
            column_top += label_h + 1
        placed.append(rect)
    return placed


def _label_font(size: int = LABEL_FONT_SIZE) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def draw_labelled_boxes(
    image: torch.Tensor, boxes_xyxy: torch.Tensor, texts: Sequence[str], colours: Sequence[str], *, side: int = 384
) -> torch.Tensor:
    """``image`` (uint8 [3, H, W]) enlarged to ``side`` pixels on its long side if smaller, with
    its boxes ([N, 4] XYXY) drawn and each labelled with its ``texts`` on a patch of its colour,
    laid out by :func:`place_labels` on a white margin around the image (uint8 [3, H', W'])."""
    scale = max(1.0, side / max(image.shape[-2:]))
    size = [round(image.shape[-2] * scale), round(image.shape[-1] * scale)]
    pixels = F.resize(image.as_subclass(torch.Tensor), size, antialias=True)
    boxes = [[value * scale for value in box] for box in torch.as_tensor(boxes_xyxy).tolist()]
    font = _label_font()
    sizes = [(right + 2 * LABEL_PAD, bottom + 2 * LABEL_PAD) for _, _, right, bottom in
             (font.getbbox(text, anchor="lt") for text in texts)]  # fmt: skip
    margin = max((h for _, h in sizes), default=0) + 2 * EDGE
    rects = place_labels(boxes, sizes, canvas_size=(size[0], size[1]), margin=margin)
    left = -min([0.0] + [r[0] for r in rects])
    top = -min([0.0] + [r[1] for r in rects])
    right = max([float(size[1])] + [r[2] for r in rects])
    bottom = max([float(size[0])] + [r[3] for r in rects])
    canvas = Image.new("RGB", (math.ceil(left + right) + 1, math.ceil(top + bottom) + 1), "white")
    canvas.paste(Image.fromarray(pixels.permute(1, 2, 0).numpy()), (round(left), round(top)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([left - 1, top - 1, left + size[1], top + size[0]], outline="#b0b0b0", width=1)
    moved = [[x + left, y + top, x2 + left, y2 + top] for x, y, x2, y2 in boxes]
    for box, colour in zip(moved, colours, strict=True):
        draw.rectangle(box, outline=colour, width=2)
    for box, (x0, y0, x1, y1), text, colour in zip(moved, rects, texts, colours, strict=True):
        x0, y0, x1, y1 = x0 + left, y0 + top, x1 + left, y1 + top
        if x0 > box[2] + EDGE:  # set aside in the column: a line to its box's right edge
            draw.line([(x0, (y0 + y1) / 2), (box[2], (box[1] + box[3]) / 2)], fill=colour, width=1)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
        draw.text((x0 + LABEL_PAD, y0 + LABEL_PAD), text, fill="white", font=font, anchor="lt")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def figure_mixup(
    pair_a, pair_b, path_classification: Path, path_detection: Path, *, lam_detection: float = 0.55
) -> list[Path]:
    """Figure 2 (classification mixup 0.1 : 0.9 of two resized images) and Figure 3
    (geometry-preserving detection mixup, boxes of both images kept, labelled with their weights
    beside the boxes, see :func:`place_labels`)."""
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
    drawn = draw_labelled_boxes(
        mixed, boxes, [f"{w:.2f}" for w in weights.tolist()], [SOURCE_COLOURS[s] for s in sources]
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
