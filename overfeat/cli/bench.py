"""overfeat bench: latency per scale and end to end, side by side, against the machine's GEMM ceiling."""

from __future__ import annotations

import argparse

from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency per scale and end to end, side by side, against the machine's GEMM ceiling")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="an ONNX file (ONNX Runtime; FILE.onnx@openvino or FILE.onnx@openvino:bf16 in OpenVINO) or engine manifest.json (TensorRT); repeat for more",
    )
    p.add_argument("--torch", default=None, help="also a PyTorch eager baseline: a .safetensors checkpoint from 'overfeat train'")
    a.add_images(p, max_images=4)
    a.add_pyramid(p, "'paper' (default), a number of scales, or HxW,HxW,...")
    p.add_argument("--repeat", type=a.positive_int, default=3, help="counted rounds (default 3)")
    p.add_argument("--warmup", type=a.count, default=1, help="warm-up rounds, not counted (default 1)")
    p.add_argument("--seed", type=a.seed, default=0, help="images and random batches (default 0)")
    p.add_argument(
        "--windows",
        action="store_true",
        help="also time dense against per-window evaluation at the largest scale (equal outputs checked)",
    )
    p.add_argument(
        "--min-score",
        type=a.number,
        default=0.2,
        help="localize: least per-location class probability of a box (default 0.2; 0 keeps every location of the top classes)",
    )
    p.add_argument(
        "--merge-kernel",
        type=a.merge_kernels,
        default=("auto",),
        metavar="KERNEL[,KERNEL]",
        help="the greedy merge's kernel: auto (default), compiled or numpy; several, comma-separated, time each --model once per kernel, side by side",
    )
    a.add_json(p)
    a.add_host_code(p)
    p.add_argument("--plot", help="write a PNG: latency per scale for each candidate and the end-to-end split")
    a.add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.bench.run import BenchConfig
    from overfeat.bench.suite import Inputs, benchmark, plot, table
    from overfeat.fileio import write_json

    a.check_outputs(args, "json", "plot")
    inputs = Inputs(images=args.images, random=args.random, max_images=args.max_images)
    config = BenchConfig(
        pyramid=args.pyramid,
        flip=not args.no_flip,
        repeat=args.repeat,
        warmup=args.warmup,
        seed=args.seed,
        min_score=args.min_score,
        allow_host_code=args.allow_host_code,
    )
    report = benchmark(
        args.model,
        inputs,
        config,
        torch=args.torch,
        windows=args.windows,
        merge_kernels=args.merge_kernel,
        progress=Progress(enabled=not args.quiet),
    )
    print(table(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(report, args.plot)}")
    return 0
