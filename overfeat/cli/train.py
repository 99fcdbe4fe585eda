"""overfeat train: a reduced-width accurate model trained on the shapes dataset."""

from __future__ import annotations

import argparse

from overfeat.errors import InputError
from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a reduced-width accurate model on the shapes dataset (cls, then loc, then det)")
    p.add_argument("--out", required=True, help="the .safetensors checkpoint to write (fp16)")
    p.add_argument("--width", type=a.positive, default=1 / 12, help="channel width multiplier (default 1/12)")
    p.add_argument("--seed", type=a.seed, default=0)
    p.add_argument("--single", type=a.positive_int, default=3000, help="single-object training images (default 3000)")
    p.add_argument("--multi", type=a.count, default=3000, help="multi-object training images (default 3000)")
    p.add_argument(
        "--steps", default="4000,1500,800", help="steps of the classifier, regressor, detector stages (default 4000,1500,800)"
    )
    p.add_argument("--lr", type=a.positive, default=3e-3, help="peak learning rate of each stage (default 3e-3)")
    p.add_argument("--batch", type=a.positive_int, default=16, help="crops per step (default 16)")
    p.add_argument(
        "--grid", type=a.positive_int, default=5, help="each crop's output map is GRID×GRID windows (default 5: 365×365 crops)"
    )
    p.add_argument(
        "--paper-trunk",
        action="store_true",
        help="stage 1 trains the trunk for the cls and det heads only, as the paper (default: the loc head joins it)",
    )
    p.add_argument("--workers", type=a.positive_int, default=2, help="processes generating the images (default 2)")
    a.add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a.check_outputs(args, "out")
    if not args.out.endswith(".safetensors"):
        raise InputError(f"--out {args.out}: the checkpoint is written as safetensors; give a .safetensors file name")
    try:
        steps = tuple(int(v) for v in args.steps.split(","))
    except ValueError:
        raise InputError(f"--steps {args.steps!r}: expected three comma-separated integers") from None
    progress = Progress(enabled=not args.quiet)
    with progress.step("loading PyTorch"):
        from overfeat.training.train import TrainConfig, save_checkpoint, train_shapes
    config = TrainConfig(
        width=args.width,
        seed=args.seed,
        single=args.single,
        multi=args.multi,
        steps=steps,
        batch=args.batch,
        grid=args.grid,
        workers=args.workers,
        lr=args.lr,
        paper_trunk=args.paper_trunk,
    )
    model, log = train_shapes(config, progress)
    save_checkpoint(model, args.out, config, log)
    print(f"trained in {log['seconds']:.0f} s; wrote {args.out}")
    return 0
