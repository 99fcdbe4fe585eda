"""overfeat datasets: generate datasets (the procedurally generated shapes)."""

from __future__ import annotations

import argparse

from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="generate datasets")
    which = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    shapes = which.add_parser("shapes", help="the procedurally generated shapes dataset (PNG + COCO JSON)")
    shapes.add_argument("--out", required=True, help="dataset directory (created if missing)")
    shapes.add_argument("--split", choices=("train", "val", "test"), required=True)
    shapes.add_argument("--count", type=a.positive_int, required=True, help="number of images")
    shapes.add_argument("--seed", type=a.seed, default=0)
    shapes.add_argument(
        "--kind", choices=("single", "multi"), default="single", help="one object per image, or 0-6 (default single)"
    )
    shapes.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.datasets.coco import write_shapes

    path = write_shapes(args.out, args.split, args.count, args.seed, args.kind, Progress())
    print(f"wrote {args.count} images and {path}")
    return 0
