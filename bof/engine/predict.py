"""Prediction over a dataset (sharded over processes) and its evaluation; ``bof predict`` writes
the ecosystem's results formats for ``bof evaluate``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from bof.config import TrainConfig, build
from bof.data.coco import CocoDetection
from bof.data.detection import DetectionDataset, collate_detection
from bof.engine import distributed
from bof.engine.checkpoint import load_checkpoint
from bof.errors import BofError
from bof.evaluation.api import (
    coco_ground_truth,
    coco_results,
    evaluate_coco_predictions,
    evaluate_voc_predictions,
    voc_detections,
)
from bof.evaluation.formats import write_coco_results, write_voc_results
from bof.io import write_checksums
from bof.models import build_detector

MODEL_FORMAT = "bof-model-1"


def load_model(path: str | Path) -> tuple[nn.Module, TrainConfig, list[str]]:
    """A training run's ``model.pt`` as (model in eval mode, its config, its classes).

    The weights carry the anchors they were trained with (a buffer of YOLOv3), so a
    config naming a `bof anchors` file does not need that file any more.
    """
    saved = load_checkpoint(path)
    if saved.get("format") != MODEL_FORMAT:
        raise BofError(f"{path}: not a bof model file (expected the model.pt of a training run)")
    config = build(TrainConfig, saved["config"])
    if "anchors" in saved["model"]:
        anchors = tuple(tuple(pair) for pair in saved["model"]["anchors"].tolist())
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, anchors=anchors))
    model = build_detector(config, len(saved["classes"]), load_published_weights=False)
    model.load_state_dict(saved["model"])
    return model.eval(), config, saved["classes"]


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: DetectionDataset,
    context: distributed.Context,
    *,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Detections for every image: ``{"image_id", "boxes" [N, 4] XYXY in the image's pixels,
    "scores", "labels"}`` on the CPU. Each process takes every ``world_size``-th image."""
    model.eval()
    shard = torch.utils.data.Subset(dataset, range(context.rank, len(dataset), context.world_size))
    # its own generator: a loader seeds its workers from the global one, whose next draws are
    # the training's (Faster R-CNN's samplers), so how often a run validates would change them
    on_gpu = context.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_detection,
        generator=torch.Generator(),
        pin_memory=on_gpu,
    )
    predictions = []
    for images, targets in tqdm(
        loader, desc="predict", unit="batch", disable=not (progress and context.is_main), leave=False
    ):
        images = [image.to(context.device, non_blocking=True).float().div_(255) for image in images]
        outputs = model(images)
        # one copy to the CPU per key and batch (each a sync on a GPU), not per image
        counts = [len(output["scores"]) for output in outputs]
        batch = {key: torch.cat([output[key].float() for output in outputs]).cpu() for key in ("boxes", "scores")}
        batch["labels"] = torch.cat([output["labels"] for output in outputs]).cpu()
        parts = {key: value.split(counts) for key, value in batch.items()}
        for index, target in enumerate(targets):
            # a copy of each part: a view would carry its whole batch through gather_objects' pickling
            output = {key: part[index].clone() for key, part in parts.items()}
            if not (torch.isfinite(output["boxes"]).all() and torch.isfinite(output["scores"]).all()):
                raise BofError(
                    f"image {target['image_id']!r}: the model's detections are not finite (NaN/inf): its weights have diverged"
                )
            predictions.append({"image_id": target["image_id"], **output})
    return distributed.gather_objects(context, predictions)


def evaluate_model(
    model: nn.Module, dataset: DetectionDataset, context: distributed.Context, *, batch_size: int = 8, workers: int = 0
) -> dict:
    """The dataset's headline metric (VOC07 mAP@0.5 for VOC data, COCO AP@[.5:.95] for COCO data),
    with the evaluation's details and, under ``predictions``, the detections it scored."""
    was_training = model.training
    started = time.perf_counter()
    predictions = predict(model, dataset, context, batch_size=batch_size, workers=workers)
    seconds = time.perf_counter() - started  # inference throughput, for Figure 1
    model.train(was_training)
    if not context.is_main:
        return {"metric_name": None, "value": None}
    timing = {"predictions": predictions, "predict_seconds": seconds}
    if isinstance(dataset, CocoDetection):
        report = evaluate_coco_predictions(predictions, dataset)
        return {**report, "metric_name": "AP", "value": report["AP"], **timing}
    report = evaluate_voc_predictions(predictions, dataset, metric="voc07")
    return {**report, "metric_name": "mAP", "value": report["mAP"], **timing}


def write_results(predictions: list[dict], dataset: DetectionDataset, out: Path, *, split: str) -> list[Path]:
    """VOC devkit files (``comp4_det_<split>_<class>.txt``) and a COCO results JSON, with their
    ``SHA256SUMS`` written last: the evaluations verify what they read against it."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if not isinstance(dataset, CocoDetection):
        detections = voc_detections(predictions, dataset.classes, {str(s.image_id) for s in dataset.samples})
        paths += write_voc_results(out / "voc", split, detections, dataset.classes)
    _, id_map, category_ids = coco_ground_truth(dataset)
    write_coco_results(out / "coco_results.json", coco_results(predictions, id_map, category_ids))
    paths.append(out / "coco_results.json")
    write_checksums(out, paths)
    return paths
