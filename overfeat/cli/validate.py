"""overfeat validate: candidates against a reference through Polygraphy; exit 1 on a failure."""

from __future__ import annotations

import argparse

from overfeat.errors import InputError
from overfeat.progress import Progress

from . import args as a


def _tolerance(text: str):
    from overfeat.engines.validate import Tolerance

    try:
        return Tolerance.parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(a.as_flags(str(exc))) from None


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="candidates (checkpoint, ONNX fp32/fp16/int8, TensorRT manifest) against a reference, through Polygraphy; exit 1 on a failure",
    )
    p.add_argument("--reference", required=True, help="model.onnx or a .safetensors checkpoint from 'overfeat train'")
    p.add_argument(
        "--candidate",
        action="append",
        required=True,
        help="a model to check (repeat for more): .onnx (ONNX Runtime; FILE.onnx@openvino or FILE.onnx@openvino:bf16 in OpenVINO), .safetensors or an engine manifest.json",
    )
    a.add_images(p, max_images=10)
    p.add_argument("--seed", type=a.seed, default=0, help="order of --images, content of --random (default 0)")
    a.add_pyramid(p)
    p.add_argument(
        "--tolerance",
        type=_tolerance,
        action="append",
        default=[],
        metavar="PREC=STAT:ATOL:RTOL",
        help="raw-output tolerance of a precision, ATOL as a fraction of the output's range "
        "(defaults fp32=elemwise:0.0001:0.001, fp16=elemwise:0.02:0.01, int8=mean:0.025:0)",
    )
    p.add_argument(
        "--min-top5-overlap",
        type=a.number,
        default=None,
        help="also fail a candidate whose top-5 classes overlap the reference's less (0..1)",
    )
    p.add_argument(
        "--min-box-iou",
        type=a.number,
        default=None,
        help="also fail a candidate whose top boxes have a lower mean IoU with the reference's (0..1)",
    )
    p.add_argument(
        "--fail-on-skip", action="store_true", help="a candidate that cannot run here (TensorRT without a GPU) fails the run"
    )
    a.add_host_code(p)
    a.add_json(p, "write the report to this JSON file")
    a.add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.engines.validate import DEFAULT_TOLERANCES, ValidateConfig, validate, write_report

    a.check_outputs(args, "json")
    config = ValidateConfig(
        images=args.images,
        random=args.random,
        max_images=args.max_images,
        pyramid=args.pyramid,
        flip=not args.no_flip,
        seed=args.seed,
        tolerances={**DEFAULT_TOLERANCES, **dict(args.tolerance)},
        min_top5_overlap=args.min_top5_overlap,
        min_box_iou=args.min_box_iou,
        fail_on_skip=args.fail_on_skip,
        allow_host_code=args.allow_host_code,
    )
    report = validate(args.reference, args.candidate, config, Progress(enabled=not args.quiet))
    print(report.summary())
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    return 0 if report.passed else 1
