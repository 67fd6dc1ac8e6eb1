"""``bof status``: how far a preset's pipeline has got (jobs done, running, waiting) and an
estimate of the time left, from its outputs alone; ``--watch N`` prints it every N seconds."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="progress and time left of a preset's pipeline", description=__doc__)
    parser.add_argument("--preset", type=Path, required=True, help="a preset of config/, e.g. config/mini.yaml")
    parser.add_argument("--cores", type=int, default=2, help="jobs that run at once (default %(default)s)")
    parser.add_argument(
        "--replicate",
        action="store_true",
        help="count the preset's replication_seeds too (what `make replicate` trains)",
    )
    parser.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="repeat every SECONDS until killed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.pipeline.matrix import load_preset  # jsonschema: loaded when a command needs it
    from bof.pipeline.status import format_status, pipeline_status

    preset = load_preset(args.preset)
    if args.replicate:
        preset = preset.replicating()
    while True:
        print(f"[{time.strftime('%H:%M:%S')}] {format_status(pipeline_status(preset), args.cores)}", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)
