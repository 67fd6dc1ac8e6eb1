"""``bof synth``: generate the embedded synthetic dataset."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from pathlib import Path

from bof.data.synth.config import SynthConfig, parse_classes
from bof.data.synth.shapes import MAX_CLASSES

DESCRIPTION = f"""\
Generate a synthetic object-detection dataset in the real Pascal VOC devkit layout.

Objects of K classes (up to {MAX_CLASSES}) are drawn as filled or outlined shapes with
class-specific geometry and random colour, scale (from ~8 px to most of the image),
aspect ratio and rotation, on textured, noisy backgrounds with non-object clutter.
Objects occlude each other and are cut by the image border; boxes cover the visible
pixels (VOC's rule), `truncated` marks border cuts and `difficult` marks tiny or mostly
hidden objects. Neighbouring classes are confusable pairs (circle/octagon,
square/diamond, pentagon/hexagon, star/cross, ...).

Written under OUT:
  VOCdevkit/VOC2007/Annotations/*.xml         VOC XML (1-based pixel boxes)
  VOCdevkit/VOC2007/JPEGImages/*.jpg
  VOCdevkit/VOC2007/ImageSets/Main/{{train,val,trainval,test}}.txt
  VOCdevkit/classes.txt                       class names, label order
  annotations/instances_<split>.json          the same splits as COCO JSON
  classification/{{train,val}}/<class>/*.jpg    one object an image, for backbone pretraining
  synth.json                                  settings, seed, counts and versions

The same --seed gives byte-identical files, whatever --workers is. The dataset is
built in a temporary folder and moved into place when complete.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic VOC-layout dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = {field.name: field.default for field in fields(SynthConfig)}
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (must be empty or absent unless --force)"
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=defaults["num_images"],
        help="detection images, all splits (default %(default)s)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=defaults["image_size"],
        help="longer side of the largest images in pixels; sizes vary down to 0.8x and aspect ratios down to 0.6 (default %(default)s)",
    )
    parser.add_argument(
        "--classes",
        default=str(defaults["num_classes"]),
        help=f"number of object classes, 1-{MAX_CLASSES}, which takes the first ones (confusable pairs sit "
        "together), or a comma-separated list of class names (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults["seed"], help="fixes every image, box and split (default %(default)s)"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=defaults["test_fraction"],
        help="share of images in the test split (default %(default)s)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=defaults["val_fraction"],
        help="share of trainval in val (default %(default)s)",
    )
    parser.add_argument(
        "--max-objects",
        type=int,
        default=defaults["max_objects"],
        help="most objects drawn in one image (default %(default)s)",
    )
    parser.add_argument(
        "--min-object-size",
        type=float,
        default=defaults["min_object_size"],
        help="smallest object size in pixels (default %(default)s)",
    )
    parser.add_argument(
        "--clutter",
        type=int,
        default=defaults["clutter"],
        help="most non-object distractors behind the objects, 0 for none (default %(default)s)",
    )
    parser.add_argument(
        "--occluders",
        type=int,
        default=defaults["occluders"],
        help="most distractors drawn over the objects (default %(default)s)",
    )
    parser.add_argument(
        "--inside",
        type=float,
        default=defaults["inside"],
        help="0: object centres anywhere, objects often cut by the border; 1: centres at least half an "
        "object size from the border (default %(default)s)",
    )
    parser.add_argument(
        "--cls-images-per-class",
        type=int,
        default=defaults["cls_images_per_class"],
        help="classification images per class (default %(default)s)",
    )
    parser.add_argument(
        "--cls-image-size",
        type=int,
        default=defaults["cls_image_size"],
        help="side of the square classification images (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes rendering in parallel (default %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT if it already holds files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.data.synth.writer import generate  # pycocotools, tqdm: loaded when synthesising

    num_classes, names = parse_classes(args.classes)
    config = SynthConfig(
        num_images=args.num_images,
        image_size=args.image_size,
        num_classes=num_classes,
        class_names=names,
        seed=args.seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        max_objects=args.max_objects,
        min_object_size=args.min_object_size,
        clutter=args.clutter,
        occluders=args.occluders,
        inside=args.inside,
        cls_images_per_class=args.cls_images_per_class,
        cls_image_size=args.cls_image_size,
    )
    manifest = generate(config, args.out, workers=max(1, args.workers), force=args.force, progress=not args.quiet)
    summary = {key: manifest[key] for key in ("images_per_split", "objects", "truncated", "difficult")}
    print(f"wrote {args.out}: {json.dumps(summary)}")
    return 0
