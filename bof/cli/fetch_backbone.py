"""``bof fetch-backbone``: a backbone's published ImageNet weights into torch.hub's cache, where
``model.pretrained: imagenet`` loads them (ResNet-50/101: torchvision's; Darknet-53: Darknet's
``darknet53.conv.74``). From the publisher's URL, or ``--from`` a local copy on a machine without
network; either way the file's SHA-256 is checked against the pinned one (``--sha256`` gives it
where bof pins none) before it is put in place.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch-backbone",
        help="published ImageNet weights of a backbone, checksum verified",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("backbone", choices=("darknet53", "resnet50", "resnet101"))
    parser.add_argument("--from", dest="source", type=Path, help="a local copy of the published file")
    parser.add_argument("--sha256", help="the file's SHA-256 (hex), where bof pins none or to check another")
    parser.add_argument("--out", type=Path, help="where to write it (default: torch.hub's cache, what training reads)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bof.models.published import fetch, published

    path = fetch(args.backbone, args.out, source=args.source, sha256=args.sha256)
    entry = published(args.backbone)
    print(f"{path}: {args.backbone}, {entry.source} (ImageNet top-1 {entry.top1} %), SHA-256 verified")
    return 0
