"""``bof pretrain``: classification pretraining of a detector backbone (Darknet-53 or ResNet),
with or without mixup, for Tables 5-6. Its ``backbone.pt`` is what ``model.pretrained``
of ``bof train`` loads."""

from __future__ import annotations

import argparse

from bof.cli.evaluate import percent
from bof.cli.train import add_run_arguments, attempt_of
from bof.config import PretrainConfig, load_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="pretrain a backbone on an ImageFolder dataset", description=__doc__
    )
    add_run_arguments(parser, config_help="YAML config (keys of bof.config.PretrainConfig)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.engine.pretrain import pretrain

    with attempt_of(args.out, args.attempt):
        config = load_config(args.config, args.overrides, cls=PretrainConfig, text=args.config_json)
        result = pretrain(config, args.out, progress=not args.quiet, restart=args.restart)
    print(f"{args.out}: top-1 {percent(result['top1'])}")
    return 0
