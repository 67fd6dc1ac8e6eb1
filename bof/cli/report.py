"""``bof report``: Tables 1-6 (Markdown, LaTeX, CSV), Figures 2-9 and REPORT.md of a preset,
from its metrics files and saved detections alone (seconds; nothing is trained)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bof.errors import BofError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="tables, figures and REPORT.md from existing results", description=__doc__
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", type=Path, help="a preset of config/, e.g. config/mini.yaml")
    source.add_argument(
        "--preset-json",
        help="the preset as JSON: its path, its settings (config) and its table definitions file (tables); "
        "what the pipeline passes",
    )
    source.add_argument(
        "--install-from",
        type=Path,
        metavar="STAGING",
        help="move a report set rendered with --render-to into --results (the pipeline's second step)",
    )
    parser.add_argument(
        "--render-to",
        type=Path,
        metavar="STAGING",
        help="only render the report set into this folder (the pipeline's first step: a damaged input "
        "stops it before the previous report is touched)",
    )
    parser.add_argument("--results", type=Path, help="with --install-from: the preset's results folder")
    parser.add_argument(
        "--complete",
        action="store_true",
        help="fail unless every run, table and figure of the preset is there (what `make ship` checks "
        "before the results are committed)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.pipeline.matrix import load_preset  # jsonschema: loaded when a command needs it
    from bof.pipeline.preset import read_preset
    from bof.report.report import incomplete, install_report, make_report, render_report

    if args.install_from is not None:
        if args.results is None:
            raise BofError("--install-from needs --results, the folder the report set goes to")
        installed = install_report(args.install_from, args.results)
        print(f"installed {len(installed)} files of {args.install_from} into {args.results}")
        return 0
    if args.preset is not None:
        preset = load_preset(args.preset)
    else:
        try:
            data = json.loads(args.preset_json)
        except json.JSONDecodeError as error:
            raise BofError(f"--preset-json is not valid JSON ({error})") from None
        if not isinstance(data, dict) or not {"path", "config", "tables"} <= set(data):
            raise BofError(
                "--preset-json needs an object with 'path', 'config' and 'tables' (what the pipeline passes)"
            )
        # the Snakefile checked the config against the schema already (which is not installed with the package)
        preset = read_preset(data["path"], data["config"], tables=data["tables"], schema=None)
    if args.render_to is not None:
        existed = args.render_to.exists()
        try:
            print(f"rendered {render_report(preset, args.render_to)}")
        except BaseException:
            if not existed:  # no half-rendered set to install (a folder of the user's is left alone)
                shutil.rmtree(args.render_to, ignore_errors=True)
            raise
        return 0
    report = make_report(preset)
    print(f"wrote {report}")
    if args.complete:
        gaps = incomplete(preset)
        if gaps:
            raise BofError(f"{report}: the results are incomplete, not for shipping: " + "; ".join(gaps))
    return 0
