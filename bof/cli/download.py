"""``bof download``: fetch, verify (MD5) and safely extract VOC/COCO archives; resumes
interrupted downloads and skips archives already extracted."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bof.data.download import ARCHIVES, fetch
from bof.errors import BofError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("download", help="download and extract VOC/COCO archives", description=__doc__)
    parser.add_argument(
        "--archive", action="append", required=True, choices=sorted(ARCHIVES), help="archive to fetch (repeatable)"
    )
    parser.add_argument("--root", type=Path, required=True, help="dataset folder (VOC: VOCdevkit/ is created inside)")
    parser.add_argument("--mirror", help="base URL serving the archives under their official file names")
    parser.add_argument(
        "--expect-md5",
        action="append",
        default=[],
        metavar="ARCHIVE=MD5",
        help="expected checksum for a mirror that repacks an archive",
    )
    parser.add_argument("--keep", action="store_true", help="keep the archive after extraction")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {}
    for item in args.expect_md5:
        name, _, md5 = item.partition("=")
        if name not in ARCHIVES or len(md5) != 32:
            raise BofError(f"--expect-md5 {item!r}: expected ARCHIVE=<32 hex digits>")
        overrides[name] = md5
    for name in args.archive:
        archive = dataclasses.replace(ARCHIVES[name], md5=overrides.get(name, ARCHIVES[name].md5))
        marker = fetch(archive, args.root, mirror=args.mirror, keep_archive=args.keep, progress=not args.quiet)
        print(f"{name}: ready in {args.root} ({marker})")
    return 0
