"""YOLOv3 anchors from a training set: k-means on box shapes with the distance ``1 - IoU``.

YOLOv2/v3 [16] chose their nine anchors this way on COCO (Darknet's ``calc_anchors``):
boxes are compared by shape only (as if centred together), so a large box and a small one
are far apart even when their aspect ratios agree, which Euclidean k-means on (w, h) would
not respect. The paper's anchors fit COCO at 416 px; a CPU preset at 128 px or a user's
own data needs its own, computed at the network's input size: every image is resized to a
``size x size`` square for training (GluonCV's ``imresize`` without letterboxing), so a box
of ``w x h`` in an image of ``W x H`` becomes ``w size / W x h size / H``.

The file ``bof anchors`` writes is what ``model.anchors`` of a training config may name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bof.config import check_anchors
from bof.data.detection import DetectionDataset
from bof.errors import ConfigError

ANCHORS_FORMAT = "bof-anchors-1"


def shape_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU [N, K] of shapes [N, 2] and centroids [K, 2], both as (w, h) centred together."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    return inter / (wh.prod(axis=1)[:, None] + centroids.prod(axis=1)[None, :] - inter)


def box_shapes(dataset: DetectionDataset, size: int) -> np.ndarray:
    """Every box of the dataset as (w, h) [N, 2] in pixels of a ``size x size`` input."""
    shapes = [
        (sample.boxes_xyxy[:, 2:] - sample.boxes_xyxy[:, :2]) * np.array([size / sample.width, size / sample.height])
        for sample in dataset.samples
    ]
    return np.concatenate(shapes).astype(np.float64) if shapes else np.zeros((0, 2))


def kmeans_anchors(
    wh: np.ndarray, k: int = 9, *, seed: int = 0, restarts: int = 10, max_iterations: int = 300
) -> tuple[np.ndarray, float]:
    """``k`` anchors [k, 2] sorted by area, and the mean best IoU of the shapes with them.

    Lloyd's iterations under ``d = 1 - IoU`` with the mean as the update (as Darknet), from
    ``restarts`` k-means++ initialisations drawn from ``seed``; the best mean IoU wins.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if len(np.unique(wh, axis=0)) < k:
        raise ConfigError(f"k-means anchors need at least {k} distinct box shapes, the training set has {len(wh)}")
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        centroids = _kmeans_plus_plus(wh, k, rng)
        for _ in range(max_iterations):
            assignment = shape_iou(wh, centroids).argmax(axis=1)
            updated = np.array(
                [wh[assignment == j].mean(axis=0) if (assignment == j).any() else centroids[j] for j in range(k)]
            )
            if np.allclose(updated, centroids, rtol=0, atol=1e-9):
                break
            centroids = updated
        fit = float(shape_iou(wh, centroids).max(axis=1).mean())
        if fit > best_fit:
            best, best_fit = centroids, fit
    order = np.argsort(best.prod(axis=1), kind="stable")
    return best[order], best_fit


def _kmeans_plus_plus(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding under the ``1 - IoU`` distance: each next centre drawn with
    probability proportional to its squared distance from the nearest chosen one."""
    centroids = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        distance = 1.0 - shape_iou(wh, np.array(centroids)).max(axis=1)
        weights = distance**2
        total = weights.sum()
        index = rng.integers(len(wh)) if total <= 0 else rng.choice(len(wh), p=weights / total)
        centroids.append(wh[index])
    return np.array(centroids, dtype=np.float64)


def write_anchors(path: str | Path, anchors: np.ndarray, *, mean_iou: float, size: int, source: dict) -> None:
    from bof.io import atomic_write_json

    atomic_write_json(
        path,
        {
            "format": ANCHORS_FORMAT,
            "anchors": [[round(float(w), 2), round(float(h), 2)] for w, h in anchors],
            "input_size": size,
            "mean_iou": mean_iou,
            **source,
        },
    )


def read_anchors(path: str | Path) -> tuple[tuple[float, float], ...]:
    """The anchors of a ``bof anchors`` file, checked: 9 positive (w, h) pairs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model.anchors: {path} is missing (make it with `bof anchors`)") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.anchors: {path} is not a readable anchors file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != ANCHORS_FORMAT:
        raise ConfigError(f"model.anchors: {path} is not a `bof anchors` file")
    return check_anchors(data.get("anchors"), str(path))
