"""overfeat export: a checkpoint (or a random model) to ONNX, parity-checked."""

from __future__ import annotations

import argparse

from overfeat.geometry import ARCHS
from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint (or a random model) to ONNX, parity-checked")
    p.add_argument(
        "--arch", choices=sorted(ARCHS), help="network: fast or accurate (default: from a checkpoint written by 'overfeat train')"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        help="trained weights: .pt/.pth state_dict, .safetensors, or the authors' released net_weight_0/net_weight_1",
    )
    p.add_argument(
        "--checkpoint-format",
        choices=("auto", "state-dict", "overfeat-release"),
        default="auto",
        help="auto (default): a file without a state_dict suffix and of a released file's exact size is one",
    )
    source.add_argument("--random-init", action="store_true", help="random weights (for tests and speed benchmarks)")
    p.add_argument("--seed", type=a.seed, default=0, help="seed of --random-init and of the parity inputs (default 0)")
    p.add_argument("--num-classes", type=a.positive_int, default=None, help="number of classes C (default 1000)")
    p.add_argument("--heads", type=a.heads, default=None, help="comma-separated heads: cls, loc, det (default cls)")
    p.add_argument("--width", type=a.positive, default=None, help="channel width multiplier (default 1.0, the paper's network)")
    p.add_argument("--shared-box", action="store_true", help="the regressor predicts 4 shared numbers instead of 4 per class")
    p.add_argument("--coarse", action="store_true", help="export the coarse map (no pooling offsets; stride 36 / 32)")
    p.add_argument("--classes", help="class names, one per line (default class_0 ...)")
    p.add_argument("--output", required=True, help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--batch", type=a.batch, default=None, help="'dynamic' (default) or a fixed batch size")
    p.add_argument(
        "--check-sizes", type=a.sizes, default=None, help="extra HxW sizes for the parity check (default 300x333,257x421)"
    )
    p.add_argument(
        "--tolerance",
        type=a.non_negative,
        default=1e-4,
        help="largest relative error accepted by the parity check (default 1e-4)",
    )
    p.add_argument("--report", help="parity report JSON (default: <output>.parity.json)")
    a.add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.fileio import check_output_path

    check_output_path(args.output, "output model")
    progress = Progress(enabled=not args.quiet)
    with progress.step("loading PyTorch"):
        from overfeat.export import ExportSettings, export_checkpoint
    settings = ExportSettings(
        arch=args.arch,
        num_classes=args.num_classes,
        heads=args.heads,
        width=args.width,
        shared_box=args.shared_box,
        coarse=args.coarse,
        classes_file=args.classes,
        seed=args.seed,
        checkpoint_format=args.checkpoint_format,
    )
    report = export_checkpoint(
        args.checkpoint,
        args.output,
        settings,
        opset=args.opset,
        batch=args.batch,
        check_sizes=args.check_sizes,
        tolerance=args.tolerance,
        report_path=args.report,
        progress=progress,
    )
    print(report.table())
    print(f"wrote {args.output}")
    return 0
