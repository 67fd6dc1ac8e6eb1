"""Detection results in the ecosystem's own formats.

* VOC devkit: one file per class, ``comp4_det_<split>_<class>.txt``, lines
  ``image_id score xmin ymin xmax ymax`` in the XML's 1-based pixel frame.
* COCO: a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

Readers reject what the official tools would choke on or silently mis-score: unknown
image ids or classes, malformed lines, non-finite numbers, inverted boxes. Each error
names the file (and line or entry).
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from bof.errors import DatasetError
from bof.evaluation.voc import ClassDetections
from bof.io import atomic_write_json, atomic_write_text, finite_float

VOC_RESULTS_PREFIX = "comp4_det"


def voc_results_path(directory: str | Path, split: str, class_name: str, prefix: str = VOC_RESULTS_PREFIX) -> Path:
    return Path(directory) / f"{prefix}_{split}_{class_name}.txt"


def write_voc_results(
    directory: str | Path, split: str, detections: Mapping[str, ClassDetections], classes: Sequence[str]
) -> list[Path]:
    """One file per class (empty when the class has no detection). Numbers are written
    with Python's shortest round-trip repr, so reading back loses nothing."""
    paths = []
    for name in classes:
        found = detections.get(name, ClassDetections())
        lines = [
            f"{image_id} {float(score)!r} " + " ".join(repr(float(v)) for v in box)
            for image_id, score, box in zip(found.image_ids, found.scores, found.boxes, strict=True)
        ]
        path = voc_results_path(directory, split, name)
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        paths.append(path)
    return paths


def _parse_voc_line(line: str, path: Path, number: int, image_ids: Collection[str]) -> tuple[str, float, list[float]]:
    fields = line.split()
    if len(fields) != 6:
        raise DatasetError(path, f"line {number}: expected 'image_id score xmin ymin xmax ymax', got {line.strip()!r}")
    image_id = fields[0]
    if image_id not in image_ids:
        raise DatasetError(path, f"line {number}: unknown image id {image_id!r} (not in the evaluated split)")
    try:
        score, *box = (float(v) for v in fields[1:])
    except ValueError:
        raise DatasetError(
            path, f"line {number}: score and coordinates must be numbers, got {line.strip()!r}"
        ) from None
    if not all(math.isfinite(v) for v in (score, *box)):
        raise DatasetError(path, f"line {number}: non-finite number in {line.strip()!r}")
    if box[2] - box[0] + 1 < 0 or box[3] - box[1] + 1 < 0:
        raise DatasetError(path, f"line {number}: inverted box {box}")
    return image_id, score, box


def find_voc_results(directory: str | Path, split: str) -> list[tuple[str, Path]]:
    """(class, path) of every ``comp*_det_<split>_<class>.txt`` in ``directory``: what
    :func:`read_voc_results` reads."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(directory, "results folder does not exist")
    pattern = re.compile(rf"^(comp\d+_det)_{re.escape(split)}_(.+)\.txt$")
    matches = ((pattern.match(path.name), path) for path in sorted(directory.iterdir()))
    return [(match.group(2), path) for match, path in matches if match]


def read_voc_results(
    directory: str | Path, split: str, classes: Sequence[str], image_ids: Collection[str]
) -> dict[str, ClassDetections]:
    """Read ``comp*_det_<split>_<class>.txt`` for every class; each must exist (an empty
    file means no detections). A file for a class outside ``classes`` is an error."""
    found: dict[str, list[Path]] = {}
    for name, path in find_voc_results(directory, split):
        found.setdefault(name, []).append(path)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(
            found[unknown[0]][0], f"results for unknown class {unknown[0]!r} (classes: {', '.join(classes)})"
        )
    known_ids = set(image_ids)
    detections = {}
    for name in classes:
        paths = found.get(name, [])
        if not paths:
            raise DatasetError(voc_results_path(directory, split, name), f"results file for class {name!r} is missing")
        if len(paths) > 1:
            raise DatasetError(
                directory, f"several results files for class {name!r}: {', '.join(p.name for p in paths)}"
            )
        rows = [
            _parse_voc_line(line, paths[0], number, known_ids)
            for number, line in enumerate(paths[0].read_text().splitlines(), start=1)
            if line.strip()
        ]
        detections[name] = ClassDetections(
            image_ids=[row[0] for row in rows],
            scores=np.array([row[1] for row in rows], dtype=np.float64),
            boxes=np.array([row[2] for row in rows], dtype=np.float64).reshape(-1, 4),
        )
    return detections


def write_coco_results(path: str | Path, results: Sequence[dict]) -> None:
    atomic_write_json(path, list(results), indent=None)


def check_coco_results(
    results: object, path: Path | str, image_ids: Collection[int], category_ids: Collection[int]
) -> list[dict]:
    """Validate a COCO results list against the ground truth's image and category ids."""
    if not isinstance(results, list):
        raise DatasetError(path, "COCO results must be a JSON list of detections")
    images, categories = set(image_ids), set(category_ids)
    for index, entry in enumerate(results):
        where = f"entry {index}"
        if not isinstance(entry, dict):
            raise DatasetError(path, f"{where}: must be an object, got {entry!r:.100}")
        missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in entry]
        if missing:
            raise DatasetError(path, f"{where}: missing {', '.join(missing)}")
        if entry["image_id"] not in images:
            raise DatasetError(path, f"{where}: unknown image_id {entry['image_id']!r}")
        if entry["category_id"] not in categories:
            raise DatasetError(path, f"{where}: unknown category_id {entry['category_id']!r}")
        bbox, score = entry["bbox"], entry["score"]
        numbers = bbox if isinstance(bbox, list) else []
        if len(numbers) != 4 or not all(finite_float(v) is not None for v in numbers):
            raise DatasetError(
                path, f"{where}: 'bbox' must be four finite numbers [x, y, w, h], got {reprlib.repr(bbox)}"
            )
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(path, f"{where}: bbox {bbox} has negative width or height")
        if finite_float(score) is None:
            raise DatasetError(path, f"{where}: 'score' must be a finite number, got {reprlib.repr(score)}")
    return results


def read_coco_results(path: str | Path, image_ids: Collection[int], category_ids: Collection[int]) -> list[dict]:
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(path, "results file is missing") from None
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return check_coco_results(results, path, image_ids, category_ids)
