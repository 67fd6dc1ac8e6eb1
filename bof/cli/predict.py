"""``bof predict``: run a trained model over a dataset and write VOC results files
(``voc/comp4_det_<split>_<class>.txt``) and a COCO results JSON (``coco_results.json``)
for ``bof evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bof.cli.data import add_dataset_arguments, open_dataset
from bof.errors import BofError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="write detections in VOC and COCO results formats", description=__doc__
    )
    parser.add_argument("--model", type=Path, required=True, help="model.pt of a training run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results files")
    parser.add_argument("--split", default="test", help="name used in the VOC results file names (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8)
    add_dataset_arguments(parser)
    parser.epilog = "Without --voc/--coco, the run's own validation data is used."
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.config import TrainConfig, build
    from bof.engine import distributed
    from bof.engine.build import open_split
    from bof.engine.checkpoint import load_checkpoint
    from bof.engine.predict import predict, write_results
    from bof.models import build_detector

    saved = load_checkpoint(args.model)
    if saved.get("format") != "bof-model-1":
        raise BofError(f"{args.model}: not a bof model file (expected the model.pt of a training run)")
    config = build(TrainConfig, saved["config"])
    dataset = open_dataset(args, check_images="header") if (args.voc or args.coco) else open_split(config.data, "val")
    if dataset.classes != saved["classes"]:
        raise BofError(f"{args.model}: trained on classes {saved['classes']}, the dataset has {dataset.classes}")
    context = distributed.setup(config.run.device)
    try:
        model = build_detector(config, len(saved["classes"]))
        model.load_state_dict(saved["model"])
        model.to(context.device)
        predictions = predict(model, dataset, context, batch_size=args.batch_size, progress=True)
        if context.is_main:
            write_results(predictions, dataset, args.out, split=args.split)
            print(f"wrote {args.out}: {sum(len(p['scores']) for p in predictions)} detections on {len(dataset)} images")
    finally:
        distributed.teardown()
    return 0
