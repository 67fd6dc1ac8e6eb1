"""Model outputs behind Figures 5 and 7, saved as JSON so the report draws them without a model.

Figure 5 ("the elephant in the room", [18]): an object of a class absent from a test
image is cut from another test image and slid across it; at each position the baseline
and the mixup-trained detector run on the doctored image. What the paper looks at is
whether the objects already in the room are still found while the intruder passes, so
for each position and model we keep the detections and the best correct score for
every original object.

Figure 7: detections of the freebies-trained model on a few test images.

Figures 2-3: two training images and their boxes, which the report mixes as the trick does.

Every image a figure shows is kept in its JSON (base64 PNG), so the report redraws the figures
from shipped results without the dataset.

Figure 1: inference throughput of the baseline and freebies models, timed side by side in one
process (a warm-up, then repeats in interleaved order; median and interquartile range), since the
runs' own timings come from whatever else the machine was doing at the time; and whether the
models have one architecture, which is why the freebies cost nothing at inference.
"""

from __future__ import annotations

import time

import torch
from torchvision.ops import box_iou
from torchvision.transforms.v2 import functional as F

from bof.config import DataConfig
from bof.data.detection import DetectionDataset
from bof.data.images import to_png_base64
from bof.engine.build import open_split
from bof.engine.predict import load_model
from bof.errors import BofError

SCORE_TO_SHOW = 0.3
POSITIONS = 9


@torch.no_grad()
def detect(model: torch.nn.Module, image: torch.Tensor) -> dict[str, list]:
    output = model([image.float().div(255)])[0]
    return {key: output[key].tolist() for key in ("boxes", "scores", "labels")}


def composite(image: torch.Tensor, patch: torch.Tensor, box: list[int]) -> torch.Tensor:
    """``image`` [3, H, W] uint8 with ``patch`` resized into the integer ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    out = image.clone()
    out[:, y0:y1, x0:x1] = F.resize(patch, [y1 - y0, x1 - x0], antialias=True)
    return out


def _intruder(dataset: DetectionDataset, present: set[int]) -> tuple[int, int] | None:
    """(image, object) of the largest non-difficult test object of a class not in ``present``."""
    best = None
    for other, candidate in enumerate(dataset.samples):
        for index, (box, label) in enumerate(zip(candidate.boxes_xyxy, candidate.labels, strict=True)):
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            if label not in present and not candidate.difficult[index] and (best is None or area > best[0]):
                best = (area, other, index)
    return None if best is None else (best[1], best[2])


def _pick_room(dataset: DetectionDataset, baseline: torch.nn.Module, *, candidates: int = 60) -> int:
    """The test image (among the first ``candidates`` with at least two clearly visible objects
    and a class left to bring in) whose objects the baseline finds most surely: its weakest
    object's best score is highest. A room whose objects are not found cannot show them lost."""
    best = None
    for room in range(len(dataset)):
        sample = dataset.samples[room]
        sizes = (sample.boxes_xyxy[:, 2:] - sample.boxes_xyxy[:, :2]).min(axis=1) if len(sample.labels) else []
        if sum(size >= 12 for size in sizes) < 2 or _intruder(dataset, set(sample.labels.tolist())) is None:
            continue
        image, target = dataset[room]
        weakest = min(_best_scores(detect(baseline, image), target))
        if best is None or weakest > best[1]:
            best = (room, weakest)
        candidates -= 1
        if candidates == 0:
            break
    if best is None:
        raise BofError("figure 5: no test image has two visible objects and an absent class to bring in")
    return best[0]


def elephant(models: list[str], *, positions: int = POSITIONS) -> dict:
    """Figure 5's data, "the elephant in the room" (§3.1): an object of a class absent from a test
    image slides across it in ``positions`` steps, and the baseline's and the mixup-trained
    model's (``models``) detections are recorded at each, with the scores left to the image's own
    objects."""
    (baseline, config, classes), (mixup, _, _) = (load_model(path) for path in models)
    dataset = open_split(config.data, "val")
    image, target = dataset[room := _pick_room(dataset, baseline)]
    source, index = _intruder(dataset, set(target["labels"].tolist()))
    source_image, source_target = dataset[source]
    x0, y0, x1, y1 = (int(round(v)) for v in source_target["boxes"][index].tolist())
    patch = source_image[:, y0:y1, x0:x1]
    height, width = image.shape[-2:]
    side = max(8, int(0.4 * min(height, width)))
    scale = side / max(patch.shape[-2:])
    patch_w, patch_h = max(4, int(patch.shape[-1] * scale)), max(4, int(patch.shape[-2] * scale))
    # the intruder slides along the line through the room's objects, beside and over them
    centre_y = float(target["boxes"].as_subclass(torch.Tensor)[:, 1::2].mean())
    top = int(min(max(centre_y - patch_h / 2, 0), height - patch_h))
    alone = {
        name: _best_scores(detect(model, image), target) for name, model in (("baseline", baseline), ("mixup", mixup))
    }
    frames = []
    for step in range(positions):
        left = round(step * (width - patch_w) / max(positions - 1, 1))
        box = [left, top, left + patch_w, top + patch_h]
        doctored = composite(image, patch, box)
        frame = {"box": box}
        for name, model in (("baseline", baseline), ("mixup", mixup)):
            found = detect(model, doctored)
            frame[name] = found
            frame[f"{name}_recall_scores"] = _best_scores(found, target)
        frames.append(frame)
    return {
        "figure": "figure5",
        "models": {"baseline": str(models[0]), "mixup": str(models[1])},
        "classes": classes,
        "room": {
            "image_id": str(target["image_id"]),
            "path": str(dataset.samples[room].image_path),
            "png": to_png_base64(image),
            "boxes": target["boxes"].tolist(),
            "labels": target["labels"].tolist(),
        },
        "intruder": {
            "image_id": str(source_target["image_id"]),
            "path": str(dataset.samples[source].image_path),
            "png": to_png_base64(source_image),
            "box": [x0, y0, x1, y1],
            "label": int(source_target["labels"][index]),
        },
        "without_intruder": alone,
        "frames": frames,
    }


def _best_scores(found: dict, target: dict) -> list[float]:
    """For each original object, the best score of a same-class detection with IoU >= 0.5 (0 if none)."""
    if not found["boxes"]:
        return [0.0] * len(target["labels"])
    ious = box_iou(target["boxes"].as_subclass(torch.Tensor).float(), torch.tensor(found["boxes"]))
    scores, labels = torch.tensor(found["scores"]), torch.tensor(found["labels"])
    best = []
    for row, label in zip(ious, target["labels"].tolist(), strict=True):
        hit = (row >= 0.5) & (labels == label)
        best.append(float(scores[hit].max()) if hit.any() else 0.0)
    return best


def examples(models: list[str], *, count: int = 4) -> dict:
    model, config, classes = load_model(models[0])
    dataset = open_split(config.data, "val")
    shown = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[index]
        found = detect(model, image)
        keep = [i for i, score in enumerate(found["scores"]) if score >= SCORE_TO_SHOW][:20]
        shown.append(
            {
                "image_id": str(target["image_id"]),
                "path": str(dataset.samples[index].image_path),
                "png": to_png_base64(image),
                "detections": {key: [found[key][i] for i in keep] for key in found},
                "best_score": max(found["scores"], default=None),  # an empty panel cites it
                "ground_truth": {"boxes": target["boxes"].tolist(), "labels": target["labels"].tolist()},
            }
        )
    return {
        "figure": "figure7",
        "model": str(models[0]),
        "classes": classes,
        "score_threshold": SCORE_TO_SHOW,
        "images": shown,
    }


def training_pair(data: DataConfig) -> dict:
    """Figures 2-3's inputs: the first training image and the one halfway through the split,
    with their boxes, and the split's size (Figure 6a's iterations per epoch come from it)."""
    dataset = open_split(data, "train", check_images="none")
    shown = []
    for index in (0, len(dataset) // 2):
        image, target = dataset[index]
        shown.append(
            {
                "image_id": str(target["image_id"]),
                "png": to_png_base64(image),
                "boxes": target["boxes"].tolist(),
                "labels": target["labels"].tolist(),
            }
        )
    return {"figure": "figure2", "classes": dataset.classes, "train_images": len(dataset), "images": shown}


def interleaved_order(models: int, repeats: int) -> list[list[int]]:
    """The order the models run in, repeat by repeat: forwards, then backwards (AB BA AB ...), so
    that a drift of the machine's speed and the slot after another model's pass hit every model
    alike."""
    forwards = list(range(models))
    return [forwards if repeat % 2 == 0 else forwards[::-1] for repeat in range(repeats)]


def architecture(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of ``model``'s state dict (parameters and buffers)."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


@torch.no_grad()
def throughput(models: list[str], *, images: int = 64, repeats: int = 7, batch_size: int = 8) -> dict:
    """Test images per second of each model in ``models`` over the first ``images`` test images,
    as a benchmark measures it: one untimed warm-up batch per model, then ``repeats`` timed passes
    of each model, interleaved (see :func:`interleaved_order`). Each pass is ``predict`` end to end
    (images read and decoded included) on the CPU with torch's threads.

    Per model it keeps every repeat's images/s, their median (``inference_images_per_second``,
    the key older readers use) and their interquartile range (numpy's 25th and 75th percentiles);
    and whether all models have the same architecture (the same state-dict names and shapes) with
    their parameter counts: the reason, independent of any timing, that a freebie costs nothing at
    inference."""
    import numpy as np

    from bof.engine import distributed
    from bof.engine.predict import predict
    from bof.engine.provenance import environment
    from bof.models import parameter_count

    loaded = [load_model(path) for path in models]
    dataset = open_split(loaded[0][1].data, "val")
    networks = [model for model, _, _ in loaded]
    subset = torch.utils.data.Subset(dataset, range(min(images, len(dataset))))
    device = torch.device("cpu")
    context = distributed.Context(0, 1, 0, device)
    warmup = torch.utils.data.Subset(dataset, range(min(batch_size, len(dataset))))
    for model in networks:  # first-call costs (allocator, kernel selection), not the model's speed
        predict(model, warmup, context, batch_size=batch_size)
    speeds: list[list[float]] = [[] for _ in networks]
    for order in interleaved_order(len(networks), repeats):
        for index in order:
            started = time.perf_counter()
            predict(networks[index], subset, context, batch_size=batch_size)
            speeds[index].append(len(subset) / (time.perf_counter() - started))
    shapes = [architecture(model) for model in networks]
    same_as = [shapes.index(shape) for shape in shapes]
    machine = environment(device)
    return {
        "figure": "figure1",
        "models": [str(path) for path in models],
        "images": len(subset),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "device": machine["device"],
        "machine": machine.get("machine"),
        "warmup_images": len(warmup),
        "repeats": repeats,
        "order": "interleaved: models forwards, then backwards, repeat by repeat",
        "inference_images_per_second": [float(np.median(values)) for values in speeds],
        "inference_repeats": speeds,
        "spread": "interquartile range (numpy 25th and 75th percentiles of the repeats)",
        "inference_interquartile": [[float(q) for q in np.percentile(values, [25, 75])] for values in speeds],
        "architecture_same_as": same_as,
        "identical_architectures": len(set(same_as)) == 1,
        "state_tensors": [len(shape) for shape in shapes],
        "parameters": [parameter_count(model) for model in networks],
    }
