"""overfeat inspect: an ONNX model's metadata, inputs, outputs, map sizes, Q/DQ check and runners."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="print an ONNX model's metadata, inputs, outputs and map sizes; check Q/DQ files against TensorRT's rules (exit 1 on a violation)",
    )
    p.add_argument("model", help="an ONNX file written by 'overfeat export'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.calibration.inspect import inspect_onnx
    from overfeat.runtime.backends import runners_for

    info = inspect_onnx(args.model)
    print(info.report())
    for number, (backend, precisions, why) in enumerate(runners_for(info.meta)):
        print(f"{'runs with' if number == 0 else '':<10} {backend:<12} {precisions}" + (f"  (not here: {why})" if why else ""))
    return 0 if info.qdq is None or info.qdq.ok else 1
