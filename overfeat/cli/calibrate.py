"""overfeat calibrate: INT8 by calibration, quantized to Q/DQ by TensorRT's rules, checked against fp32."""

from __future__ import annotations

import argparse

from overfeat.errors import InputError
from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="INT8: calibrate, quantize to Q/DQ by TensorRT's rules, check against fp32")
    p.add_argument("--model", required=True, help="the fp32 ONNX file from 'overfeat export'")
    p.add_argument("--images", required=True, help="calibration images: a directory, a COCO JSON or shapes:SPLIT:N")
    p.add_argument(
        "--method",
        choices=("entropy", "minmax", "percentile"),
        default="entropy",
        help="activation range method (default entropy)",
    )
    p.add_argument(
        "--percentile", type=a.number, default=None, help="percentile method: the percentile of |activation| kept (default 99.99)"
    )
    p.add_argument("--max-images", type=a.positive_int, default=64, help="calibration images used (default 64)")
    p.add_argument("--seed", type=a.seed, default=0, help="seed of the image sampling (default 0)")
    p.add_argument("--exclude", default="", help="comma-separated Conv node names kept in float")
    p.add_argument(
        "--auto-exclude",
        action="store_true",
        help="when the check fails, keep the most sensitive layers in float until it passes",
    )
    p.add_argument(
        "--cache", help="activation range cache (default: <output>.calib.json); reused for the same model, method and images"
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write a range cache")
    p.add_argument("--output", required=True, help="the INT8 ONNX file to write")
    a.add_check(p, "the images after the calibration images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.calibration.pipeline import CalibrateConfig, calibrate, default_cache, default_report
    from overfeat.calibration.ranges import Method

    a.check_outputs(args, "output")
    if args.cache and args.no_cache:
        raise InputError("--cache and --no-cache contradict each other; give one")
    config = CalibrateConfig(
        Method(args.method, args.percentile),
        args.images,
        args.max_images,
        args.seed,
        args.pyramid,
        not args.no_flip,
        tuple(e.strip() for e in args.exclude.split(",") if e.strip()),
        args.auto_exclude,
        None if args.no_cache else args.cache or default_cache(args.output),
        a.check_config(args),
    )
    report = calibrate(
        args.model,
        args.output,
        config,
        Progress(enabled=not args.quiet),
        args.report or default_report(args.model, args.output, "int8"),
    )
    print(report.table())
    return 0 if report.written else 1
