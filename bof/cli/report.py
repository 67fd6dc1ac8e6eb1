"""``bof report``: Tables 1-6 (Markdown, LaTeX, CSV), Figures 2-9 and REPORT.md of a preset,
from its metrics files and saved detections alone (seconds; nothing is trained)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bof.errors import BofError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="tables, figures and REPORT.md from existing results", description=__doc__
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", type=Path, help="a preset of config/, e.g. config/mini.yaml")
    source.add_argument("--preset-json", help="the preset and its tables as JSON (what the pipeline passes)")
    parser.add_argument(
        "--complete",
        action="store_true",
        help="fail unless every run, table and figure of the preset is there (what `make ship` checks "
        "before the results are committed)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.pipeline.matrix import Preset, load_preset
    from bof.report.report import incomplete, make_report

    if args.preset is not None:
        preset = load_preset(args.preset)
    else:
        try:
            data = json.loads(args.preset_json)
        except json.JSONDecodeError as error:
            raise BofError(f"--preset-json is not valid JSON ({error})") from None
        preset = Preset(Path(data.get("path", "config/preset.yaml")), data["raw"], data["tables"])
    report = make_report(preset)
    print(f"wrote {report}")
    if args.complete:
        gaps = incomplete(preset)
        if gaps:
            raise BofError(f"{report}: the results are incomplete, not for shipping: " + "; ".join(gaps))
    return 0
