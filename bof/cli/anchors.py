"""``bof anchors``: YOLOv3 anchors for a training set, by k-means on box shapes with the
distance 1 - IoU (as YOLOv2/v3 chose theirs), at the network's input size.

The paper's nine anchors fit COCO at 416 px. Training at another size or on other data
(the CPU presets at 128 px, your own dataset) needs anchors of its own: write them with
this command and name the file in the training config (``model.anchors: anchors.json``),
or let the pipeline do it (``model.anchors: kmeans`` in a preset).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bof.cli.data import add_dataset_arguments, open_dataset
from bof.errors import BofError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "anchors",
        help="k-means YOLOv3 anchors for a training set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_arguments(parser)
    parser.add_argument("--size", type=int, required=True, help="the network's input size in pixels (e.g. 416)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means++ initialisations (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="anchors JSON to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.models.anchors import box_shapes, kmeans_anchors, write_anchors

    if args.size <= 0:
        raise BofError(f"--size must be positive, got {args.size}")
    dataset = open_dataset(args, check_images="none", training=True)
    shapes = box_shapes(dataset, args.size)
    anchors, mean_iou = kmeans_anchors(shapes, seed=args.seed)
    source = {
        "dataset": str(args.voc or args.coco),
        "sets": [":".join(pair) for pair in args.sets] if args.voc else None,
        "boxes": len(shapes),
        "seed": args.seed,
    }
    write_anchors(args.out, anchors, mean_iou=mean_iou, size=args.size, source=source)
    pairs = ", ".join(f"[{w:.1f}, {h:.1f}]" for w, h in anchors)
    print(f"wrote {args.out}: {len(shapes)} boxes at {args.size} px, mean best IoU {mean_iou:.3f}")
    print(f"anchors: [{pairs}]")
    return 0
