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
    parser.add_argument("--workers", type=int, help="data-loading processes (default: the run's run.workers)")
    add_dataset_arguments(parser)
    parser.epilog = "Without --voc/--coco, the run's own validation data is used."
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from bof.engine import distributed
    from bof.engine.build import open_split
    from bof.engine.predict import load_model, predict, write_results

    model, config, classes = load_model(args.model)
    dataset = open_dataset(args, check_images="header") if (args.voc or args.coco) else open_split(config.data, "val")
    if dataset.classes != classes:
        raise BofError(f"{args.model}: trained on classes {classes}, the dataset has {dataset.classes}")
    context = distributed.setup(config.run.device)
    try:
        model.to(context.device)
        if context.device.type == "cuda":  # as it trained
            model.to(memory_format=torch.channels_last)
        workers = config.run.workers if args.workers is None else args.workers
        predictions = predict(model, dataset, context, batch_size=args.batch_size, workers=workers, progress=True)
        if context.is_main:
            write_results(predictions, dataset, args.out, split=args.split)
            print(f"wrote {args.out}: {sum(len(p['scores']) for p in predictions)} detections on {len(dataset)} images")
    finally:
        distributed.teardown()
    return 0
