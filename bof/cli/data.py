"""``bof data``: check a VOC or COCO dataset and convert VOC devkits to COCO JSON."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from bof.data.detection import DetectionDataset
from bof.data.voc import VOCDetection
from bof.errors import BofError
from bof.io import atomic_write_json


def parse_image_sets(text: str) -> list[tuple[str, str]]:
    """'2007:trainval,2012:trainval' -> [('2007', 'trainval'), ('2012', 'trainval')]."""
    pairs = []
    for item in text.split(","):
        year, _, split = item.strip().partition(":")
        if not year or not split:
            raise argparse.ArgumentTypeError(f"expected YEAR:SPLIT[,YEAR:SPLIT...], got {text!r}")
        pairs.append((year, split))
    return pairs


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("dataset (a VOC devkit or a COCO annotation file)")
    source.add_argument("--voc", type=Path, metavar="VOCDEVKIT", help="VOCdevkit folder")
    source.add_argument(
        "--sets",
        type=parse_image_sets,
        default=[("2007", "trainval")],
        metavar="YEAR:SPLIT,...",
        help="VOC image sets to concatenate (default 2007:trainval)",
    )
    source.add_argument("--coco", type=Path, metavar="INSTANCES_JSON", help="COCO annotation file")
    source.add_argument("--images", type=Path, metavar="DIR", help="folder that COCO file_name entries are relative to")
    parser.add_argument(
        "--on-error",
        choices=("strict", "skip"),
        default="strict",
        help="stop at the first bad sample, or skip bad samples and list them (default %(default)s)",
    )
    parser.add_argument(
        "--check-images",
        choices=("none", "header", "decode"),
        default="header",
        help="how much of every image to read up front (default %(default)s)",
    )


def open_dataset(
    args: argparse.Namespace, *, check_images: str | None = None, training: bool = False
) -> DetectionDataset:
    """The dataset the arguments name; ``training`` drops COCO crowd regions and empty images, as training does."""
    from bof.data.coco import CocoDetection  # pycocotools: loaded when a command needs it

    check = check_images or args.check_images
    if (args.voc is None) == (args.coco is None):
        raise BofError("give exactly one of --voc VOCDEVKIT or --coco INSTANCES_JSON")
    if args.voc is not None:
        return VOCDetection(args.voc, args.sets, on_error=args.on_error, check_images=check)
    if args.images is None:
        raise BofError("--coco needs --images DIR, the folder its file_name entries are relative to")
    return CocoDetection(
        args.images,
        args.coco,
        on_error=args.on_error,
        check_images=check,
        use_crowd=not training,
        skip_empty=training,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check datasets, convert VOC to COCO", description=__doc__)
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    check = commands.add_parser("check", help="load every annotation (and image header) and print a summary")
    add_dataset_arguments(check)
    check.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    check.set_defaults(run=run_check)

    to_coco = commands.add_parser("to-coco", help="write a VOC devkit's image sets as one COCO JSON file")
    add_dataset_arguments(to_coco)
    to_coco.add_argument("--out", type=Path, required=True, help="COCO JSON to write (file_name relative to VOCDEVKIT)")
    to_coco.set_defaults(run=run_to_coco)


def summarize(dataset: DetectionDataset) -> dict:
    labels = np.concatenate([s.labels for s in dataset.samples])
    difficult = np.concatenate([s.difficult for s in dataset.samples])
    per_class = Counter(labels.tolist())
    return {
        "images": len(dataset),
        "objects": int(len(labels)),
        "difficult": int(difficult.sum()),
        "objects_per_class": {name: per_class[label] for label, name in enumerate(dataset.classes)},
        "skipped": [{"path": s.path, "problem": s.problem} for s in dataset.skipped],
    }


def run_check(args: argparse.Namespace) -> int:
    summary = summarize(open_dataset(args))
    print(
        f"{summary['images']} images, {summary['objects']} objects ({summary['difficult']} difficult), {len(summary['skipped'])} skipped"
    )
    for name, count in summary["objects_per_class"].items():
        print(f"  {name:<16} {count}")
    for skipped in summary["skipped"]:
        print(f"  skipped {skipped['path']}: {skipped['problem']}")
    if args.json:
        atomic_write_json(args.json, summary)
    return 1 if summary["skipped"] else 0


def run_to_coco(args: argparse.Namespace) -> int:
    from bof.data.coco import detection_to_coco

    if args.voc is None:
        raise BofError("to-coco converts a VOC devkit: give --voc VOCDEVKIT")
    dataset = open_dataset(args)
    # the loaders refuse non-finite numbers; should one slip through, nothing is written (allow_nan=False)
    atomic_write_json(args.out, detection_to_coco(dataset, image_root=args.voc), indent=None)
    print(f"wrote {args.out}: {len(dataset)} images, {sum(len(s.labels) for s in dataset.samples)} objects")
    return 1 if dataset.skipped else 0
