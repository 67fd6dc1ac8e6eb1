"""``bof train``: train a detector (YOLOv3 or Faster R-CNN) from a YAML config, or resume it.

Launch with ``torchrun --nproc_per_node N -m bof train ...`` for several processes
(NCCL on GPUs, gloo on CPU); ``optim.batch_size`` is the global batch.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path

from bof.cli.evaluate import percent
from bof.config import load_config
from bof.errors import FAILED_ON_INPUT, BofError, ConfigError, DatasetError
from bof.io import atomic_write_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or resume a detector",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser, config_help="YAML config (see config/examples/); defaults otherwise")
    parser.set_defaults(run=run)


def add_run_arguments(parser: argparse.ArgumentParser, *, config_help: str) -> None:
    """The options ``bof train`` and ``bof pretrain`` share: where the config comes from and the run folder."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config-json", help="the whole config as JSON (what the pipeline passes)")
    source.add_argument("--config", type=Path, help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. optim.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder; a checkpoint there of the same config is resumed, one of another config is "
        "set aside (checkpoint.stale-<time>.pt) and the run starts over",
    )
    parser.add_argument("--restart", action="store_true", help="set the run folder's checkpoint aside and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--attempt",
        type=int,
        help="the scheduler's attempt (the pipeline passes it): after an attempt 1 that failed on its input or "
        "config, a retry stops at once instead of failing alike with more memory and time; without it, a bad "
        "input or config writes nothing",
    )


@contextmanager
def attempt_of(out: Path, attempt: int | None):
    """Run a job's ``attempt``: the first records a bad input or config (`ConfigError`,
    `DatasetError`: a retry repeats it; not a transient fault such as a full disk or a held run
    folder) in the run folder; a later one finding that record stops at once, naming it. No
    ``attempt`` (a run by hand): nothing recorded."""
    if attempt is None:
        yield
        return
    marker = Path(out) / FAILED_ON_INPUT
    if attempt <= 1:
        if os.environ.get("RANK", "0") == "0":  # under torchrun: one process clears it, before any can fail
            marker.unlink(missing_ok=True)
    elif marker.exists():
        raise BofError(f"attempt 1 failed on its input or config, a retry would too: {marker.read_text().strip()}")
    try:
        yield
    except (ConfigError, DatasetError) as error:
        if attempt <= 1:
            marker.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, f"{error}\n")
        raise


def run(args: argparse.Namespace) -> int:
    from bof.engine.train import train

    with attempt_of(args.out, args.attempt):
        config = load_config(args.config, args.overrides, text=args.config_json)
        report = train(config, args.out, progress=not args.quiet, restart=args.restart)
    if report.get("metric_name"):
        print(f"{args.out}: {report['metric_name']} {percent(report['value'])}")
    return 0
