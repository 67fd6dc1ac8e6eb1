"""``bof figure-data``: what the figures show, saved as JSON with the images they draw, so that
``bof report`` draws them without a model or the dataset (figure1: inference throughput of
baseline and freebies models, measured side by side; figure2: two training images and their
boxes, for Figures 2-3; figure5: the "elephant in the room" slide, baseline vs mixup model;
figure7: example detections)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bof.config import DataConfig, build
from bof.errors import BofError
from bof.io import atomic_write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("figure-data", help="model outputs for Figures 1, 5 and 7", description=__doc__)
    parser.add_argument("figure", choices=("figure1", "figure2", "figure5", "figure7"))
    parser.add_argument(
        "--models",
        nargs="+",
        type=Path,
        help="figure1: model.pt files to time; figure5: baseline then mixup model.pt; figure7: one model.pt",
    )
    parser.add_argument("--data-json", help="figure2: the dataset's `data` section of a training config, as JSON")
    parser.add_argument("--count", type=int, default=4, help="figure7: test images to show")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.engine.figure_data import elephant, examples, throughput, training_pair

    if args.figure == "figure2":
        if args.data_json is None or args.models:
            raise BofError("figure2 takes --data-json (the dataset's settings) and no --models")
        atomic_write_json(args.out, training_pair(_data_config(args.data_json)))
        print(f"wrote {args.out}")
        return 0
    if not args.models:
        raise BofError(f"{args.figure} takes --models")
    expected = {"figure5": 2, "figure7": 1}.get(args.figure)
    if expected is not None and len(args.models) != expected:
        raise BofError(f"{args.figure} takes {expected} model file(s), got {len(args.models)}")
    if args.figure == "figure1":
        data = throughput(args.models)
    else:
        data = elephant(args.models) if args.figure == "figure5" else examples(args.models, count=args.count)
    atomic_write_json(args.out, data)
    print(f"wrote {args.out}")
    return 0


def _data_config(text: str):
    try:
        return build(DataConfig, json.loads(text))
    except json.JSONDecodeError as error:
        raise BofError(f"--data-json is not valid JSON ({error})") from None
