"""COCO-format datasets (via pycocotools) and conversion of any VOC devkit to COCO JSON."""

from __future__ import annotations

import contextlib
import io
import json
import re
import reprlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from bof.data.detection import DetectionDataset, Sample, Transforms, check_sample_images
from bof.data.policy import CheckImages, OnError, SkipLog, check_policy_args
from bof.errors import DatasetError
from bof.io import finite_float

# COCO boxes are floats that real annotation tools round outward; tolerate this much
# overhang (in pixels) and clip it, but reject anything further outside.
BORDER_TOLERANCE = 1.0


class _NonFiniteLiteral(str):
    """What json's NaN, Infinity and -Infinity are read as, so the file can be refused naming where."""


def _find_literal(value: object, where: str = "") -> tuple[str, str] | None:
    """(JSON path such as ``annotations[2].bbox[2]``, literal) of the first non-finite literal in ``value``."""
    if isinstance(value, _NonFiniteLiteral):
        return where, str(value)
    if isinstance(value, dict):
        items = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for key, item in items:
        found = _find_literal(item, key)
        if found is not None:
            return found
    return None


def read_coco_json(path: str | Path) -> dict:
    """Load a COCO annotation file and check its top-level structure.

    NaN, Infinity and -Infinity are refused: standard JSON has no such literal, but Python's
    json reads them, and a NaN passes every comparison a box check makes."""
    path = Path(path)
    literals: list[str] = []

    def non_finite(name: str) -> _NonFiniteLiteral:
        literals.append(name)
        return _NonFiniteLiteral(name)

    try:
        with open(path) as stream:
            data = json.load(stream, parse_constant=non_finite)
    except FileNotFoundError:
        raise DatasetError(path, "annotation file is missing") from None
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    except UnicodeDecodeError as error:
        raise DatasetError(path, f"not valid JSON text ({error.reason})") from None
    if literals:
        where, name = _find_literal(data) or ("", literals[0])  # not found only where a repeated key dropped it
        at = f"{where} is " if where else ""
        raise DatasetError(path, f"not valid JSON: {at}{name} (JSON numbers must be finite)")
    if not isinstance(data, dict):
        raise DatasetError(path, "top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(path, f"missing list '{key}'")
    _check_ids(data, path)
    return data


def _check_ids(data: dict, path: Path) -> None:
    """The integer ids pycocotools indexes by must exist, be unique and refer to each other."""
    for key, required in (
        ("images", ("id",)),
        ("categories", ("id",)),
        ("annotations", ("id", "image_id", "category_id")),
    ):
        seen = set()
        for position, entry in enumerate(data[key]):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(field), int) for field in required):
                raise DatasetError(
                    path, f"{key}[{position}] needs integer {', '.join(map(repr, required))}: {entry!r:.200}"
                )
            if entry["id"] in seen:
                raise DatasetError(path, f"{key}[{position}]: id {entry['id']} is used twice")
            seen.add(entry["id"])
    image_ids = {image["id"] for image in data["images"]}
    for annotation in data["annotations"]:
        if annotation["image_id"] not in image_ids:
            raise DatasetError(path, f"annotation {annotation['id']}: unknown image_id {annotation['image_id']}")


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools ``COCO`` index built from a dict, without its progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _finite(value: int | float, what: str, where: str, path: Path) -> float:
    number = finite_float(value)
    if number is None:
        raise DatasetError(path, f"{where}: {what} is not a finite number ({reprlib.repr(value)})")
    return number


def _coco_box(annotation: dict, width: int, height: int, where: str, path: Path) -> tuple[float, float, float, float]:
    bbox = annotation.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise DatasetError(path, f"{where}: 'bbox' must be [x, y, w, h] numbers, got {bbox!r}")
    names = ("x", "y", "width", "height")
    x, y, w, h = (_finite(v, f"bbox {name}", where, path) for v, name in zip(bbox, names, strict=True))
    if w < 0 or h < 0:
        raise DatasetError(path, f"{where}: bbox {bbox} is inverted (negative width or height)")
    if w == 0 or h == 0:
        raise DatasetError(path, f"{where}: bbox {bbox} is empty")
    t = BORDER_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise DatasetError(path, f"{where}: bbox {bbox} is outside the {width}x{height} image")
    return max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))


def read_coco_samples(
    image_dir: Path,
    annotation_path: Path,
    coco: COCO,
    category_ids: Sequence[int],
    skip_log: SkipLog,
    *,
    use_crowd: bool = True,
    skip_empty: bool = False,
) -> list[Sample]:
    """Every image of ``coco`` as a `Sample`; an image with a bad entry is recorded in ``skip_log``
    (which refuses or skips it, by its policy)."""
    label_of = {category_id: label for label, category_id in enumerate(category_ids)}
    samples = []
    for image_id in sorted(coco.imgs):
        try:
            file_name, width, height = _image_entry(coco.imgs[image_id], image_id, annotation_path)
            boxes, labels, difficult = [], [], []
            for annotation in coco.imgToAnns.get(image_id, []):
                box, crowd = _annotation_entry(annotation, label_of, width, height, image_id, annotation_path)
                if crowd and not use_crowd:
                    continue
                boxes.append(box)
                labels.append(label_of[annotation["category_id"]])
                difficult.append(crowd)
        except DatasetError as error:
            skip_log.record(error)
            continue
        if skip_empty and not boxes:
            continue
        samples.append(
            Sample(
                image_id=image_id,
                image_path=image_dir / file_name,
                width=width,
                height=height,
                boxes_xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
                difficult=np.asarray(difficult, dtype=bool),
                annotation_path=annotation_path,
            )
        )
    return samples


def _image_entry(info: dict, image_id, annotation_path: Path) -> tuple[str, int, int]:
    """An ``images`` entry's file name, width and height, checked."""
    file_name, width, height = info.get("file_name"), info.get("width"), info.get("height")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, (int, float)):
            _finite(value, name, f"image {image_id}", annotation_path)
    if not isinstance(file_name, str) or not isinstance(width, int) or not isinstance(height, int):
        raise DatasetError(annotation_path, f"image {image_id}: needs 'file_name', integer 'width' and 'height'")
    return file_name, width, height


def _annotation_entry(annotation: dict, label_of: dict, width: int, height: int, image_id, annotation_path: Path):
    """An annotation's box (x1, y1, x2, y2) and whether it is a crowd (or ``ignore``) region, checked."""
    where = f"annotation {annotation.get('id')} (image {image_id})"
    if annotation.get("category_id") not in label_of:
        raise DatasetError(annotation_path, f"{where}: unknown category_id {annotation.get('category_id')!r}")
    box = _coco_box(annotation, width, height, where, annotation_path)
    if "area" in annotation:  # COCOeval sorts ground truth into area ranges by it
        area = annotation["area"]
        if not isinstance(area, (int, float)):
            raise DatasetError(annotation_path, f"{where}: 'area' must be a number, got {area!r:.100}")
        _finite(area, "area", where, annotation_path)
    return box, bool(annotation.get("iscrowd", 0) or annotation.get("ignore", 0))


class CocoDetection(DetectionDataset):
    """A COCO-format dataset (``images``/``annotations``/``categories``) as a detection dataset.

    Labels are contiguous 0-based indices over the categories sorted by id;
    ``category_ids[label]`` maps back for results files. Crowd (``iscrowd``) and
    ``ignore`` annotations are flagged ``difficult`` (evaluation keeps them as the regions
    COCOeval ignores); ``use_crowd=False`` drops them and ``skip_empty=True`` drops images
    left without objects, as the authors' GluonCV ``COCODetection(use_crowd=False)`` does
    for training. ``on_error`` and ``check_images`` behave as in
    :class:`bof.data.voc.VOCDetection`.
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        *,
        transforms: Transforms | None = None,
        on_error: OnError = "strict",
        check_images: CheckImages = "header",
        use_crowd: bool = True,
        skip_empty: bool = False,
    ):
        check_policy_args(check_images)
        self.annotation_file = Path(annotation_file)
        data = read_coco_json(self.annotation_file)
        self.coco = coco_from_dict(data)
        self.category_ids = sorted(self.coco.cats)
        classes = [str(self.coco.cats[category_id].get("name", category_id)) for category_id in self.category_ids]
        skip_log = SkipLog(on_error)
        samples = read_coco_samples(
            Path(image_dir),
            self.annotation_file,
            self.coco,
            self.category_ids,
            skip_log,
            use_crowd=use_crowd,
            skip_empty=skip_empty,
        )
        total = len(samples) + len(skip_log.skipped)
        samples = check_sample_images(samples, check_images, skip_log)
        skip_log.report(f"COCO {self.annotation_file}", total)
        if not samples:
            raise DatasetError(self.annotation_file, f"no usable images ({len(skip_log.skipped)} skipped)")
        super().__init__(samples, classes, transforms=transforms, skip_log=skip_log)


def coco_image_ids(voc_ids: Sequence[str]) -> list[int]:
    """Integer COCO ids for VOC ids: their digits ('2008_000008' -> 2008000008) when that
    is unambiguous, otherwise 1..N in order."""
    digits = [re.sub(r"_", "", image_id) for image_id in voc_ids]
    if all(d.isdigit() for d in digits) and len({int(d) for d in digits}) == len(digits):
        return [int(d) for d in digits]
    return list(range(1, len(voc_ids) + 1))


def detection_to_coco(dataset: DetectionDataset, image_root: str | Path) -> dict:
    """COCO JSON (as a dict) of a dataset's annotations; ``file_name`` is relative to ``image_root``.

    Category ids are 1..K in label order. Difficult boxes become crowd regions
    (``"iscrowd": 1``): COCOeval sets every annotation's ``ignore`` from ``iscrowd``, so
    that is the only way to make it ignore them. A detection that overlaps one (intersection
    over the *detection's* area >= the IoU threshold) and matches no regular box is then
    neither a true nor a false positive, and the box is not a positive.
    The image's original id is kept under ``"voc_id"`` so results map back.
    """
    image_root = Path(image_root)
    ids = coco_image_ids([str(sample.image_id) for sample in dataset.samples])
    images, annotations = [], []
    for coco_id, sample in zip(ids, dataset.samples, strict=True):
        images.append(
            {
                "id": coco_id,
                "file_name": sample.image_path.relative_to(image_root).as_posix(),
                "width": sample.width,
                "height": sample.height,
                "voc_id": str(sample.image_id),
            }
        )
        for box, label, difficult in zip(
            sample.boxes_xyxy.tolist(), sample.labels.tolist(), sample.difficult.tolist(), strict=True
        ):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": coco_id,
                    "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": int(difficult),
                }
            )
    categories = [
        {"id": label + 1, "name": name, "supercategory": "none"} for label, name in enumerate(dataset.classes)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}
