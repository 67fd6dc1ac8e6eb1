"""Figures 1-9 from data, metrics and saved detections; no model runs here.

1: accuracy against training and inference throughput (run.json), baseline and all freebies.

2-3: classification vs geometry-preserving detection mixup on two training images.
4: mixing-ratio densities.  5: the "elephant in the room" slide (from figure5.json).
6: (a) cosine vs step schedules of the figure detector's settings, (b) their validation curves.
7: example detections (from figure7.json).  8-9: per-category AP gain of the freebies over
the baseline, YOLOv3 and Faster R-CNN (red: gain, blue: drop, as in the paper).
budget (a preset with ``budgets``): each freebie's delta against the training length.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.utils import draw_bounding_boxes  # noqa: E402

from bof.data.images import from_png_base64  # noqa: E402
from bof.engine.figure_data import SCORE_TO_SHOW, composite  # noqa: E402
from bof.io import read_json
from bof.pipeline.matrix import Job, Preset, category_metric, figure_cells, metric_path, record_path  # noqa: E402
from bof.report.budget import budget_frame  # noqa: E402
from bof.report.tricks import figure_beta, figure_lr_schedules, figure_mixup, save_figure  # noqa: E402

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe", "#008080")


def _colour(label: int) -> str:
    return PALETTE[label % len(PALETTE)]


def empty_panel_note(threshold: float, best_score: float | None) -> str:
    """What a panel without a box says: nothing reached the drawing threshold, and the model's best
    score below it (``best_score``; None where the model returned nothing or it was not recorded)."""
    note = f"no detection with score >= {threshold:.2f}"
    return note if best_score is None else f"{note} (best {best_score:.2f})"


def _draw(
    axis,
    image: torch.Tensor,
    detections: dict,
    classes: list[str],
    title: str,
    *,
    threshold: float | None = None,
    best_score: float | None = None,
) -> None:
    """``image`` [3, H, W] uint8 with ``detections`` (those at or above ``threshold``) drawn on it;
    a panel left without a box says why (:func:`empty_panel_note`) instead of looking like a bug."""
    boxes = torch.tensor(detections["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = [
        f"{classes[label]} {score:.2f}" for label, score in zip(detections["labels"], detections["scores"], strict=True)
    ]
    drawn = (
        draw_bounding_boxes(
            image, boxes, labels=labels, colors=[_colour(label) for label in detections["labels"]], width=2
        )
        if len(boxes)
        else image
    )
    axis.imshow(drawn.permute(1, 2, 0).numpy())
    if not len(boxes) and threshold is not None:
        axis.text(
            0.5, 0.5, empty_panel_note(threshold, best_score).replace(" (", "\n("), transform=axis.transAxes,
            ha="center", va="center", fontsize=7, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
        )  # fmt: skip
    axis.set_title(title, fontsize=8)
    axis.axis("off")


def figures_2_to_4(data_path: Path, folder: Path) -> list[Path]:
    """Figures 2-3 mix the two training images of ``figure2.json`` as the tricks do; Figure 4
    needs no data."""
    data = read_json(Path(data_path))
    pairs = []
    for shown in data["images"]:
        image = from_png_base64(shown["png"], data_path)
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor(shown["boxes"], dtype=torch.float32).reshape(-1, 4),
            format="XYXY",
            canvas_size=tuple(image.shape[-2:]),
        )
        pairs.append((image, {"boxes": boxes, "labels": torch.tensor(shown["labels"], dtype=torch.int64)}))
    paths = figure_mixup(*pairs, folder / "figure2.png", folder / "figure3.png")
    paths.append(figure_beta(folder / "figure4.png"))
    return paths


DETECTOR_LABELS = {"yolov3": "YOLOv3", "frcnn_r50": "Faster R-CNN", "frcnn_r101": "Faster R-CNN R101"}


# Figure 5's two models, as its data names them: two runs identical but for mixup (the first is
# the baseline only when the pair is the minimal one; from a stacked table it is the row before mixup)
FIGURE5_LABELS = {"baseline": "without mixup", "mixup": "with mixup"}


def figure5(data_path: Path, folder: Path) -> Path:
    data = read_json(data_path)
    room = from_png_base64(data["room"]["png"], data_path)
    source = from_png_base64(data["intruder"]["png"], data_path)
    x0, y0, x1, y1 = data["intruder"]["box"]
    patch = source[:, y0:y1, x0:x1]
    frames = data["frames"]
    shown = sorted({0, len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1})
    figure = plt.figure(figsize=(3 * len(shown), 8.5))
    grid = figure.add_gridspec(3, len(shown), height_ratios=[1, 1, 0.9])
    for column, index in enumerate(shown):
        doctored = composite(room, patch, frames[index]["box"])
        for row, name in enumerate(("baseline", "mixup")):
            axis = figure.add_subplot(grid[row, column])
            scores = frames[index][name]["scores"]
            visible = {
                k: [v for v, s in zip(frames[index][name][k], scores, strict=True) if s >= SCORE_TO_SHOW]
                for k in ("boxes", "scores", "labels")
            }
            title = f"{FIGURE5_LABELS[name]}, position {index + 1}/{len(frames)}"
            _draw(
                axis, doctored, visible, data["classes"], title,
                threshold=SCORE_TO_SHOW, best_score=max(scores, default=None),
            )  # fmt: skip
    axis = figure.add_subplot(grid[2, :])
    for (name, style), colour in zip((("baseline", "o-"), ("mixup", "s-")), ("#1f77b4", "#ff7f0e"), strict=True):
        means = [np.mean(f[f"{name}_recall_scores"]) for f in frames]
        axis.plot(range(1, len(frames) + 1), means, style, color=colour, label=FIGURE5_LABELS[name])
        if "without_intruder" in data:
            alone = np.mean(data["without_intruder"][name])
            axis.axhline(alone, color=colour, linestyle=":", label=f"{FIGURE5_LABELS[name]}, no intruder")
    intruder = data["classes"][data["intruder"]["label"]]
    axis.set_xlabel(f"position of the intruding '{intruder}'")
    axis.set_ylabel("mean score of the room's objects")
    axis.set_ylim(0, 1)
    axis.legend()
    figure.suptitle("Elephant in the room: an object of an absent class slides across a test image", fontsize=10)
    return save_figure(figure, folder / "figure5.png")


def _curve(path: Path) -> tuple[list[int], list[float]]:
    points = read_json(path)
    return [p["epoch"] for p in points], [100 * p["value"] for p in points]


def figure6(preset: Preset, folder: Path) -> list[Path]:
    """(a) the schedules of the step run's settings, at its iterations per epoch (its
    ``run.json``), (b) the step and cosine runs' validation curves, seed means."""
    step, cosine = figure_cells(preset)["figure6"]
    spec = preset.detectors[step.detector].optim
    run = read_json(record_path(preset, Job(step.detector, step.combo, preset.seeds[0]), "run.json"))
    iters = max(1, run["train_images"] // spec.get("batch_size", 16))
    paths = [
        figure_lr_schedules(
            folder / "figure6a.png",
            base_lr=spec.get("lr", 1e-3),
            iters_per_epoch=iters,
            epochs=spec.get("epochs", 12),
            warmup_epochs=spec.get("warmup_epochs", 0),
            step_epochs=spec.get("step_epochs", ()),
        )
    ]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for cell, label in ((step, "step"), (cosine, "cosine")):
        curves = [
            _curve(Path(record_path(preset, Job(cell.detector, cell.combo, seed), "val_curve.json")))
            for seed in preset.seeds
        ]
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        epochs = curves[0][0]
        values = np.mean([c[1] for c in curves if c[0] == epochs], axis=0)
        axis.plot(epochs, values, "o-", label=f"{label} ({cell.combo})")
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation mAP (%)")
    axis.legend(fontsize=7)
    paths.append(save_figure(figure, folder / "figure6b.png"))
    return paths


def figure7(data_path: Path, folder: Path, detector: str = "YOLOv3") -> Path:
    data = read_json(data_path)
    images = data["images"]
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4), squeeze=False)
    for axis, shown in zip(axes[0], images, strict=True):
        _draw(
            axis,
            from_png_base64(shown["png"], data_path),
            shown["detections"],
            data["classes"],
            f"test image {shown['image_id']}",
            threshold=data["score_threshold"],
            best_score=shown.get("best_score"),
        )
    figure.suptitle(f"Detections of the freebies-trained {detector} (score >= {data['score_threshold']})", fontsize=10)
    return save_figure(figure, folder / "figure7.png")


def per_category(path: str | Path, metric: str) -> dict[str, float | None]:
    report = read_json(Path(path))
    return report["per_category"] if metric == "coco" else report["per_class"]


def figure_categories(preset: Preset, name: str, folder: Path) -> Path:
    """Per-category AP of the freebies minus the baseline, averaged over seeds."""
    baseline, bof = figure_cells(preset)[name]
    metric = category_metric(preset)
    gains: dict[str, list[float]] = {}
    for seed in preset.seeds:
        before = per_category(metric_path(preset, Job(baseline.detector, baseline.combo, seed), metric), metric)
        after = per_category(metric_path(preset, Job(bof.detector, bof.combo, seed), metric), metric)
        for category, value in after.items():
            if value is not None and before.get(category) is not None:
                gains.setdefault(category, []).append(100 * (value - before[category]))
    ordered = sorted(gains, key=lambda c: np.mean(gains[c]))
    values = [float(np.mean(gains[c])) for c in ordered]
    figure, axis = plt.subplots(figsize=(max(5, 0.3 * len(ordered) + 2), 3.8))
    axis.bar(range(len(ordered)), values, color=["#d62728" if v >= 0 else "#1f77b4" for v in values])
    axis.set_xticks(range(len(ordered)), ordered, rotation=70, fontsize=7)
    axis.axhline(0, color="black", linewidth=0.8)
    detector = DETECTOR_LABELS[bof.detector]
    axis.set_ylabel(f"AP gain ({'COCO AP' if metric == 'coco' else 'VOC07 AP@0.5'}, points)")
    axis.set_title(f"{detector}: per-category gain of the freebies over the baseline", fontsize=9)
    return save_figure(figure, folder / f"{name}.png")


def _run_means(preset: Preset, cell, metric: str) -> dict[str, float] | None:
    """Seed means of a run's training images/s and its headline metric (%)."""
    values: dict[str, list[float]] = {"train": [], "metric": []}
    for seed in preset.seeds:
        job = Job(cell.detector, cell.combo, seed)
        run_path, metric_file = Path(record_path(preset, job, "run.json")), Path(metric_path(preset, job, metric))
        if not run_path.exists() or not metric_file.exists():
            continue
        run = read_json(run_path)
        report = read_json(metric_file)
        value = report["mAP"] if metric == "voc07" else report["AP"]
        if run.get("images_per_second") is None or value is None:
            continue
        values["train"].append(run["images_per_second"])
        values["metric"].append(100 * value)
    return {key: float(np.mean(v)) for key, v in values.items()} if values["metric"] else None


def figure1(preset: Preset, data_path: Path, folder: Path) -> Path:
    """Accuracy against training and inference throughput, baseline and all freebies, for each
    detector (the pairs of Figures 8-9): the freebies move a model up, not sideways. Training
    images/s are the runs' own (seed means); inference images/s come from ``figure1.json``,
    where the models were timed side by side: the median of the repeats, with their interquartile
    range as bars (a JSON written before the repeats were kept has the one number, and no bars)."""
    available = figure_cells(preset)
    timed = read_json(Path(data_path))
    inference = dict(zip(available["figure1"], timed["inference_images_per_second"], strict=True))
    quartiles = dict(zip(available["figure1"], timed.get("inference_interquartile", []), strict=False))
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    plotted = 0
    for name, label, colour in (("figure8", "YOLOv3", "#e6194b"), ("figure9", "Faster R-CNN", "#4363d8")):
        if name not in available:
            continue
        metric = category_metric(preset)
        cells = available[name]
        baseline, bof = (_run_means(preset, cell, metric) for cell in cells)
        if baseline is None or bof is None:
            continue
        baseline["inference"], bof["inference"] = inference[cells[0]], inference[cells[1]]
        for axis, key in zip(axes, ("train", "inference"), strict=True):
            axis.annotate(
                "", xy=(bof[key], bof["metric"]), xytext=(baseline[key], baseline["metric"]),
                arrowprops={"arrowstyle": "->", "color": colour},
            )  # fmt: skip
            axis.scatter([baseline[key]], [baseline["metric"]], color=colour, marker="o", label=f"{label} baseline")
            axis.scatter([bof[key]], [bof["metric"]], color=colour, marker="*", s=120, label=f"{label} + BoF")
        for cell, point in zip(cells, (baseline, bof), strict=True):
            if cell in quartiles:
                low, high = quartiles[cell]
                axes[1].errorbar(
                    [point["inference"]], [point["metric"]], xerr=[[point["inference"] - low], [high - point["inference"]]],
                    fmt="none", ecolor=colour, capsize=3, linewidth=1,
                )  # fmt: skip
        plotted += 1
    if not plotted:
        plt.close(figure)
        raise FileNotFoundError(None, "no finished baseline/freebies pair with throughput", "run.json")
    axes[0].set_xlabel("training images/s")
    axes[1].set_xlabel(
        f"inference images/s (median of {timed['repeats']} repeats; bars: interquartile range)"
        if "repeats" in timed
        else "inference images/s"
    )
    metric = category_metric(preset)
    for axis in axes:
        axis.set_ylabel("COCO AP@[.5:.95] (%)" if metric == "coco" else "VOC07 mAP@0.5 (%)")
        axis.grid(alpha=0.3)
    # from 0: a gap between two points reads against the whole speed, not on a zoomed axis
    axes[1].set_xlim(0, 1.08 * axes[1].get_xlim()[1])
    axes[1].legend(fontsize=7)
    figure.suptitle("Figure 1: accuracy against throughput, baseline and bag of freebies (seed means)", fontsize=9)
    return save_figure(figure, folder / "figure1.png")


def _run_name(model_path: str) -> str:
    """``detector/combo`` of a run's ``.../runs/<detector>/<combo>/seed<k>/model.pt``."""
    folder = Path(model_path).parent
    folder = folder.parent if folder.name.startswith("seed") else folder
    return f"{folder.parent.name}/{folder.name}"


def figure1_summary(data_path: Path) -> str:
    """What Figure 1's inference axis measured, in numbers: each model's median images/s with the
    interquartile range of the repeats, how they were timed, and whether the models share one
    architecture (state-dict names and shapes), which is why the freebies cost nothing there."""
    data = read_json(Path(data_path))
    names = [_run_name(path) for path in data["models"]]
    if "repeats" not in data:  # written before the repeats were kept: one timing per model
        timings = ", ".join(
            f"{name} {value:.1f}" for name, value in zip(names, data["inference_images_per_second"], strict=True)
        )
        return f"Inference images/s, one timing per model over {data['images']} test images: {timings}."
    machine = (data.get("machine") or {}).get("cpu")
    device = f"{data['device']}, {machine}," if machine else data["device"]
    timings = ", ".join(
        f"{name} {median:.1f} ({low:.1f}-{high:.1f})"
        for name, median, (low, high) in zip(
            names, data["inference_images_per_second"], data["inference_interquartile"], strict=True
        )
    )
    groups: dict[int, list[int]] = {}
    for index, first in enumerate(data["architecture_same_as"]):
        groups.setdefault(first, []).append(index)
    architectures = "; ".join(
        f"{' and '.join(names[i] for i in members)} have one architecture ({data['state_tensors'][first]} "
        f"state-dict tensors of the same names and shapes, {data['parameters'][first]:,} parameters)"
        if len(members) > 1
        else f"{names[first]} has an architecture of its own ({data['parameters'][first]:,} parameters)"
        for first, members in groups.items()
    )
    return (
        f"Inference images/s on {device} with {data['threads']} threads, median (interquartile range) of "
        f"{data['repeats']} interleaved repeats over {data['images']} test images (batch {data['batch_size']}) "
        f"after an untimed warm-up: {timings}; {architectures}."
    )


def figure5_summary(data_path: Path) -> str:
    """What Figure 5's curves show, in numbers: the room's objects' mean score without the
    intruder, and its mean and lowest over the intruder's positions, for each model."""
    data = read_json(Path(data_path))
    parts = []
    for name in ("baseline", "mixup"):
        with_intruder = [float(np.mean(frame[f"{name}_recall_scores"])) for frame in data["frames"]]
        alone = data.get("without_intruder", {}).get(name)
        reference = f"{float(np.mean(alone)):.2f} without the intruder, " if alone is not None else ""
        parts.append(
            f"{FIGURE5_LABELS[name]} {reference}{np.mean(with_intruder):.2f} on average with it, "
            f"{min(with_intruder):.2f} at its worst position"
        )
    intruder = data["classes"][data["intruder"]["label"]]
    count = len(data["room"]["labels"])
    return f"Mean score of the room's {count} objects as the '{intruder}' slides across them: " + "; ".join(parts) + "."


def figure_budget(preset: Preset, folder: Path) -> Path:
    """Each freebie's delta over the row it stacks on against the training budget, with its 95 %
    interval over seeds; the paper's delta as a dashed line, zero as a solid one."""
    frame = budget_frame(preset)
    panels = list(dict.fromkeys(zip(frame.table, frame.freebie, strict=True)))
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.6, 3.2), squeeze=False, sharey=True)
    for axis, (table, freebie) in zip(axes[0], panels, strict=True):
        rows = frame[(frame.table == table) & (frame.freebie == freebie)].sort_values("epochs")
        epochs = rows.epochs.to_numpy(dtype=float)
        delta = rows.delta.to_numpy(dtype=float)
        low = rows.delta_ci_low.to_numpy(dtype=float)
        high = rows.delta_ci_high.to_numpy(dtype=float)
        errors = np.vstack([delta - low, high - delta])
        axis.errorbar(epochs, delta, yerr=np.nan_to_num(errors), marker="o", capsize=3, color="#1f77b4", label="ours")
        axis.axhline(0, color="black", linewidth=0.8)
        paper = rows.paper_delta.dropna()
        if len(paper):
            axis.axhline(float(paper.iloc[-1]), color="#d62728", linestyle="--", linewidth=1, label="paper")
        axis.set_xscale("log", base=2)
        axis.set_xticks(epochs, [f"{e:g}" for e in epochs])
        axis.minorticks_off()
        axis.set_xlabel("training epochs")
        axis.set_title(f"{freebie}\n(over {rows.stacked_on.iloc[0]})", fontsize=8)
    axes[0][0].set_ylabel("Δ (points, 95 % CI over seeds)")
    axes[0][-1].legend(fontsize=7, loc="best")
    return save_figure(figure, folder / "budget.png")
