"""overfeat triton-repo: a Triton Inference Server model repository for a model."""

from __future__ import annotations

import argparse

from . import args as a

NETS = ("onnxruntime", "tensorrt", "python")  # overfeat.serving.repository.NETS, without importing it here


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-repo",
        help="write a Triton model repository: the network model and a pipeline model (pyramid, decoding, merge)",
    )
    add_repository_flags(p)
    p.add_argument("--output", required=True, help="the repository folder to write (new, or one this command wrote)")
    p.set_defaults(func=run)


def add_repository_flags(p: argparse.ArgumentParser) -> None:
    """The flags triton-repo and serve share: the model and how the repository serves it."""
    p.add_argument("--model", required=True, help="an exported ONNX file, or an engine manifest.json")
    p.add_argument("--name", default="overfeat", help="the pipeline model's name; the network is NAME_net (default overfeat)")
    p.add_argument(
        "--net",
        choices=NETS,
        default=None,
        help="the network model's backend (default: onnxruntime for ONNX, tensorrt for a manifest; "
        "python: ONNX Runtime inside the Python backend, for servers without the ONNX Runtime backend)",
    )
    p.add_argument(
        "--task", choices=("classify", "localize", "detect"), default=None, help="the pipeline's task when a request names none"
    )
    p.add_argument("--instances", type=a.positive_int, default=1, help="instances of each model (default 1)")
    p.add_argument(
        "--max-batch", type=a.positive_int, default=8, help="the network's largest batch for dynamic batching (default 8)"
    )
    p.add_argument(
        "--max-pixels", type=a.positive_int, default=None, help="the pipeline refuses larger images (default 64,000,000)"
    )
    a.add_pyramid(p)


def options(args: argparse.Namespace):
    from overfeat.serving.repository import RepoOptions

    limit = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    return RepoOptions(args.name, args.net, args.task, args.instances, args.max_batch, args.pyramid, not args.no_flip, **limit)


def run(args: argparse.Namespace) -> int:
    from overfeat.serving.repository import write_repository

    print(write_repository(args.model, args.output, options(args)).table())
    return 0
