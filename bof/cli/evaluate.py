"""``bof evaluate``: score results files with the official VOC or COCO semantics."""

from __future__ import annotations

import argparse
from pathlib import Path

from bof import __version__
from bof.data.voc import VOCDetection
from bof.evaluation.api import voc_ground_truth
from bof.evaluation.coco import BACKENDS, evaluate_coco
from bof.evaluation.formats import find_voc_results, read_coco_results, read_voc_results
from bof.evaluation.voc import METRICS, evaluate_voc
from bof.io import atomic_write_json, verify_checksums

CHECKSUMS_HELP = (
    "a SHA256SUMS the results were written with (`bof predict` and `bof train` write one): every results"
    " file read must be listed there and unchanged"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score detection results (VOC mAP, COCO AP)", description=__doc__)
    kinds = parser.add_subparsers(dest="results_format", required=True, metavar="{voc,coco}")

    voc = kinds.add_parser(
        "voc",
        help="Pascal VOC mAP from comp4_det_<split>_<class>.txt files",
        description="Pascal VOC mAP with the official devkit's rules. Needs only Annotations/ and "
        "ImageSets/Main/<split>.txt of the devkit, not the images.",
    )
    voc.add_argument("--devkit", type=Path, required=True, help="VOCdevkit folder")
    voc.add_argument("--year", default="2007", help="devkit year (default %(default)s)")
    voc.add_argument("--split", default="test", help="image set to score (default %(default)s)")
    voc.add_argument("--results", type=Path, required=True, help="folder of comp*_det_<split>_<class>.txt files")
    voc.add_argument(
        "--metric",
        choices=METRICS,
        default="voc07",
        help="voc07: the devkit's 11-point AP (MATLAB thresholds); voc07-gluoncv: 11-point AP with GluonCV's np.arange thresholds; area: area under the precision envelope, VOC2010+ (default %(default)s)",
    )
    voc.add_argument("--iou", type=float, default=0.5, help="IoU a match needs (default %(default)s)")
    voc.add_argument("--out", type=Path, required=True, help="JSON to write: mAP, per_class, settings")
    voc.add_argument("--checksums", type=Path, help=CHECKSUMS_HELP)
    voc.set_defaults(run=run_voc)

    coco = kinds.add_parser(
        "coco",
        help="COCO box AP@[.5:.95], AP50, AP75, APs/m/l, AR",
        description="COCO box metrics, as COCOeval computes them.",
    )
    coco.add_argument("--annotations", type=Path, required=True, help="ground-truth instances JSON")
    coco.add_argument(
        "--results", type=Path, required=True, help="results JSON (list of image_id, category_id, bbox, score)"
    )
    coco.add_argument(
        "--backend",
        choices=BACKENDS,
        default="faster",
        help="faster-coco-eval or the pycocotools reference (default %(default)s)",
    )
    coco.add_argument(
        "--out", type=Path, required=True, help="JSON to write: the 12 COCO numbers, per_category, settings"
    )
    coco.add_argument("--checksums", type=Path, help=CHECKSUMS_HELP)
    coco.set_defaults(run=run_coco)


def run_voc(args: argparse.Namespace) -> int:
    dataset = VOCDetection(args.devkit, [(args.year, args.split)], check_images="none")
    if args.checksums is not None:
        verify_checksums(args.checksums, [path for _, path in find_voc_results(args.results, args.split)])
    ground_truth = voc_ground_truth(dataset)
    detections = read_voc_results(args.results, args.split, dataset.classes, set(ground_truth))
    report = evaluate_voc(detections, ground_truth, dataset.classes, metric=args.metric, iou_threshold=args.iou)
    report["settings"] = {
        "devkit": str(args.devkit),
        "year": args.year,
        "split": args.split,
        "results": str(args.results),
        "classes": dataset.classes,
        "num_images": len(dataset),
        "bof_version": __version__,
    }
    atomic_write_json(args.out, report)
    print(f"VOC{args.year} {args.split} mAP ({args.metric}, IoU {args.iou}): {_percent(report['mAP'])}")
    for name, ap in report["per_class"].items():
        print(f"  {name:<16} {_percent(ap)}")
    return 0


def run_coco(args: argparse.Namespace) -> int:
    from bof.data.coco import read_coco_json  # pycocotools: loaded when a command needs it

    if args.checksums is not None:
        verify_checksums(args.checksums, [args.results])
    ground_truth = read_coco_json(args.annotations)
    results = read_coco_results(
        args.results, {image["id"] for image in ground_truth["images"]}, {c["id"] for c in ground_truth["categories"]}
    )
    report = evaluate_coco(ground_truth, results, backend=args.backend)
    report["settings"] = {
        "annotations": str(args.annotations),
        "results": str(args.results),
        "num_images": len(ground_truth["images"]),
        "num_detections": len(results),
        "bof_version": __version__,
    }
    atomic_write_json(args.out, report)
    print(
        "  ".join(
            f"{name} " + (percent(report[name]) if report[name] >= 0 else "n/a")  # COCOeval's -1: no ground truth
            for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")
        )
    )
    return 0


def percent(fraction: float) -> str:
    """A metric as printed for people: percent with its sign ("0.45 %"); files hold the fraction (0.0045)."""
    return f"{fraction * 100:.2f} %"


def _percent(value: float | None) -> str:
    return "n/a (no positives)" if value is None else percent(value)
