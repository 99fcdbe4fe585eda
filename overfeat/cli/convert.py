"""overfeat convert: fp16 (a converted file) or bf16 (the check of OpenVINO's bf16 execution), checked against fp32."""

from __future__ import annotations

import argparse

from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="FP16: weights and activations fp16, inputs/outputs fp32, checked against fp32; "
        "bf16: the accuracy check of OpenVINO's bf16 execution (no file written)",
    )
    p.add_argument(
        "--precision",
        choices=("fp16", "bf16"),
        required=True,
        help="fp16: write an fp16 file; bf16: check the fp32 file run in bf16 by OpenVINO (INT8: 'overfeat calibrate')",
    )
    p.add_argument("--model", required=True, help="the fp32 ONNX file from 'overfeat export'")
    p.add_argument("--output", help="the converted ONNX file to write (fp16 only)")
    p.add_argument("--seed", type=a.seed, default=0, help="seed of the held-out image order (default 0)")
    a.add_check(p, "none; give one or --no-check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.calibration.pipeline import convert, default_report

    report = convert(
        args.model,
        args.output,
        args.precision,
        a.check_config(args),
        args.pyramid,
        not args.no_flip,
        Progress(enabled=not args.quiet),
        args.report or default_report(args.model, args.output, args.precision),
    )
    print(report.table())
    if report.output is None:
        return 0 if report.check is not None and report.check.passed else 1
    return 0 if report.written else 1
