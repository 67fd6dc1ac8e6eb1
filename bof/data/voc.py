"""Pascal VOC devkit reader: real VOC2007/2012 or any devkit in the same layout.

``VOCdevkit/VOC<year>/{Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt}``.
Several (year, split) pairs are concatenated, as the paper trains on VOC07+12 trainval.
XML is parsed with ``defusedxml`` so a crafted file cannot expand entities or reach
external resources.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree as SafeElementTree
import numpy as np

from bof.data.detection import DetectionDataset, Sample, Transforms, check_sample_images
from bof.data.policy import CheckImages, OnError, SkipLog, check_policy_args
from bof.errors import DatasetError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
CLASSES_FILE = "classes.txt"


def read_class_names(devkit_root: Path) -> list[str]:
    """The devkit's class list: ``<devkit>/classes.txt`` (one name a line) if present, else VOC's 20."""
    path = Path(devkit_root) / CLASSES_FILE
    if not path.exists():
        return list(VOC_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(path, "class list is empty")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(path, f"class names repeated: {', '.join(duplicates)}")
    return names


def read_image_set(devkit_root: Path, year: str, split: str) -> tuple[Path, list[str]]:
    path = Path(devkit_root) / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(path, f"image set file is missing (looked for VOC{year} split '{split}')")
    image_ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not image_ids:
        raise DatasetError(path, "image set is empty")
    return path, image_ids


def _text(element: ElementTree.Element, tag: str, path: Path) -> str:
    found = element.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise DatasetError(path, f"missing <{tag}> in <{element.tag}>")
    return found.text.strip()


def _number(element: ElementTree.Element, tag: str, path: Path, where: str) -> float:
    """A finite number: ``float()`` also reads 'nan', 'inf' and '1e999' (-> inf), which every
    later comparison would let through (comparisons with NaN are false)."""
    text = _text(element, tag, path)
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(path, f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DatasetError(path, f"{where}: <{tag}> is not a finite number: {text!r}")
    return value


def _flag(element: ElementTree.Element, tag: str, path: Path) -> bool:
    found = element.find(tag)
    if found is None or found.text is None:
        return False
    text = found.text.strip()
    if text not in ("0", "1"):
        raise DatasetError(path, f"<{tag}> must be 0 or 1, got {text!r}")
    return text == "1"


def parse_voc_xml(path: Path, class_index: Mapping[str, int]) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Parse one annotation: (width, height, boxes_xyxy [N, 4], labels [N], difficult [N]).

    Boxes must satisfy VOC's ``1 <= xmin <= xmax <= width`` (likewise for y): the frame is
    inclusive, so ``xmin == xmax`` is a box one pixel wide. They are returned in the
    pixel-edge frame ``[xmin - 1, ymin - 1, xmax, ymax]``.
    """
    try:
        root = SafeElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file is missing") from None
    except defusedxml.DefusedXmlException as error:
        raise DatasetError(path, f"XML refused for safety ({type(error).__name__}: {error})") from None
    except ElementTree.ParseError as error:
        raise DatasetError(path, f"malformed XML ({error})") from None
    size = root.find("size")
    if size is None:
        raise DatasetError(path, "missing <size>")
    width, height = int(_number(size, "width", path, "<size>")), int(_number(size, "height", path, "<size>"))
    if size.findtext("depth", "").strip():  # unused, but checked so that no non-finite number passes
        _number(size, "depth", path, "<size>")
    if width <= 0 or height <= 0:
        raise DatasetError(path, f"image size must be positive, got {width}x{height}")

    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = _text(obj, "name", path)
        if name not in class_index:
            raise DatasetError(path, f"object {number}: unknown class {name!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(path, f"object {number} ({name}): missing <bndbox>")
        xmin, ymin, xmax, ymax = (
            _number(bndbox, tag, path, f"object {number} ({name})") for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        where = f"object {number} ({name}) box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
        if xmax < xmin or ymax < ymin:
            raise DatasetError(path, f"{where} is inverted")
        if xmin < 1 or ymin < 1 or xmax > width or ymax > height:
            raise DatasetError(path, f"{where} is outside the {width}x{height} image")
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        labels.append(class_index[name])
        difficult.append(_flag(obj, "difficult", path))
    return (
        width,
        height,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(difficult, dtype=bool),
    )


def read_voc_samples(
    devkit_root: Path, image_sets: Sequence[tuple[str, str]], classes: Sequence[str], skip_log: SkipLog
) -> list[Sample]:
    class_index = {name: index for index, name in enumerate(classes)}
    samples: list[Sample] = []
    seen: dict[str, Path] = {}
    for year, split in image_sets:
        set_path, image_ids = read_image_set(devkit_root, str(year), split)
        year_root = Path(devkit_root) / f"VOC{year}"
        for image_id in image_ids:
            if image_id in seen:
                raise DatasetError(set_path, f"image id {image_id!r} is listed again (first in {seen[image_id]})")
            seen[image_id] = set_path
            annotation_path = year_root / "Annotations" / f"{image_id}.xml"
            try:
                width, height, boxes, labels, difficult = parse_voc_xml(annotation_path, class_index)
            except DatasetError as error:
                skip_log.record(error)
                continue
            image_path = year_root / "JPEGImages" / f"{image_id}.jpg"
            samples.append(Sample(image_id, image_path, width, height, boxes, labels, difficult, annotation_path))
    return samples


class VOCDetection(DetectionDataset):
    """A VOC devkit as a detection dataset.

    Args:
        root: the ``VOCdevkit`` folder.
        image_sets: (year, split) pairs, e.g. ``[("2007", "trainval"), ("2012", "trainval")]``.
        classes: class names in label order; default ``<root>/classes.txt`` or VOC's 20.
        on_error: ``"strict"`` raises on the first bad sample; ``"skip"`` drops it and
            lists it in ``skipped`` (and logs a warning with the count).
        check_images: ``"header"`` (default) reads each image's header and end marker at
            construction, ``"decode"`` decodes every image, ``"none"`` defers to ``__getitem__``.
    """

    def __init__(
        self,
        root: str | Path,
        image_sets: Sequence[tuple[str, str]] = (("2007", "trainval"),),
        *,
        classes: Sequence[str] | None = None,
        transforms: Transforms | None = None,
        on_error: OnError = "strict",
        check_images: CheckImages = "header",
    ):
        check_policy_args(check_images)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(self.root, "VOC devkit folder does not exist")
        classes = list(classes) if classes is not None else read_class_names(self.root)
        skip_log = SkipLog(on_error)
        samples = read_voc_samples(self.root, image_sets, classes, skip_log)
        total = len(samples) + len(skip_log.skipped)
        samples = check_sample_images(samples, check_images, skip_log)
        skip_log.report(f"VOC {self.root} {list(image_sets)}", total)
        if not samples:
            raise DatasetError(self.root, f"no usable samples in {list(image_sets)} ({len(skip_log.skipped)} skipped)")
        super().__init__(samples, classes, transforms=transforms, skip_log=skip_log)


def format_voc_xml(
    *,
    folder: str,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[tuple[str, bool, bool, tuple[int, int, int, int]]],
    database: str = "bof synthetic",
) -> str:
    """A VOC2007-style annotation; ``objects`` are (name, truncated, difficult, 1-based box)."""
    lines = [
        "<annotation>",
        f"\t<folder>{escape(folder)}</folder>",
        f"\t<filename>{escape(filename)}</filename>",
        "\t<source>",
        f"\t\t<database>{escape(database)}</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, truncated, difficult, (xmin, ymin, xmax, ymax) in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(name)}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(truncated)}</truncated>",
            f"\t\t<difficult>{int(difficult)}</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{xmin}</xmin>",
            f"\t\t\t<ymin>{ymin}</ymin>",
            f"\t\t\t<xmax>{xmax}</xmax>",
            f"\t\t\t<ymax>{ymax}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"
