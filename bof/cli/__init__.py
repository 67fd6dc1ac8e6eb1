"""The ``bof`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys

from bof import __version__
from bof.cli import (
    anchors,
    data,
    download,
    evaluate,
    fetch_backbone,
    figure_data,
    predict,
    pretrain,
    report,
    show_tricks,
    status,
    synth,
    train,
)
from bof.errors import BofError

COMMANDS = (
    synth,
    download,
    data,
    anchors,
    pretrain,
    fetch_backbone,
    train,
    predict,
    evaluate,
    figure_data,
    report,
    show_tricks,
    status,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bof",
        description="Bag of Freebies for training object detectors (Zhang et al., 2019), reproduced.",
    )
    parser.add_argument("--version", action="version", version=f"bof {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it logs every COCOeval line
    try:
        return args.run(args) or 0
    except BofError as error:
        print(f"bof {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bof {args.command}: interrupted", file=sys.stderr)
        return 130
