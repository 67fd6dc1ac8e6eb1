"""``bof show-tricks``: render the tricks themselves as PNGs (Figures 2, 3, 4 and 6a)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bof.cli.data import parse_image_sets
from bof.data.voc import VOCDetection


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show-tricks", help="render mixup, beta densities and LR schedules as PNGs", description=__doc__
    )
    parser.add_argument("--voc", type=Path, required=True, help="VOCdevkit to take the two mixup images from")
    parser.add_argument(
        "--sets", type=parse_image_sets, default=[("2007", "trainval")], help="image sets (default 2007:trainval)"
    )
    parser.add_argument("--seed", type=int, default=0, help="picks the two images (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.report.tricks import figure_beta, figure_lr_schedules, figure_mixup
    from bof.tricks.random import generator_for, randint

    dataset = VOCDetection(args.voc, args.sets)
    generator = generator_for(args.seed)
    first = randint(generator, 0, len(dataset) - 1)
    second = (first + 1 + randint(generator, 0, len(dataset) - 2)) % len(dataset)
    paths = figure_mixup(
        dataset[first],
        dataset[second],
        args.out / "figure2_mixup_classification.png",
        args.out / "figure3_mixup_detection.png",
    )
    paths.append(figure_beta(args.out / "figure4_beta_distributions.png"))
    paths.append(figure_lr_schedules(args.out / "figure6a_lr_schedules.png"))
    for path in paths:
        print(f"wrote {path}")
    return 0
