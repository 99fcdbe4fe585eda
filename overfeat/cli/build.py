"""overfeat build: TensorRT engines, one plan per pyramid size (or one dynamic profile), and manifest.json."""

from __future__ import annotations

import argparse

from overfeat.errors import BackendError
from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="TensorRT engines: one plan per pyramid size (or one dynamic profile) and manifest.json")
    p.add_argument(
        "--model",
        required=True,
        help="an ONNX file from 'overfeat export', 'calibrate' or 'convert'; its precision is the engines'",
    )
    p.add_argument(
        "--output", required=True, help="directory for the plans, the timing cache and manifest.json (created if missing)"
    )
    a.add_pyramid(p, "'paper' (default), a number of scales, or HxW,HxW,...; 'aspect' only with --dynamic", flip=False)
    p.add_argument(
        "--orientations",
        choices=("both", "landscape"),
        default="both",
        help="build the paper sizes for portrait images too (both, default) or landscape only",
    )
    p.add_argument(
        "--batch",
        type=a.positive_int,
        default=2,
        help="batch of each plan (default 2: the image and its mirror; 1 for --no-flip)",
    )
    p.add_argument(
        "--dynamic",
        metavar="MIN:OPT:MAX",
        default=None,
        help="one plan with a dynamic profile, sizes HxW, e.g. 245x245:317x389:569x569",
    )
    p.add_argument("--workspace", default=None, help="builder workspace limit, e.g. 4GiB (default: TensorRT's)")
    p.add_argument("--timing-cache", default=None, help="timing cache file, read and updated (default: OUTPUT/timing.cache)")
    p.add_argument(
        "--opt-level",
        type=int,
        choices=range(6),
        metavar="{0..5}",
        default=None,
        help="builder optimization level 0-5 (default: TensorRT's, 3)",
    )
    p.add_argument(
        "--hardware-compat",
        choices=("none", "ampere+", "same-compute-capability"),
        default="none",
        help="plans that load on other GPUs: ampere+ (compute capability 8.0 or later) or same-compute-capability (TensorRT 10.9+)",
    )
    p.add_argument(
        "--version-compatible", action="store_true", help="plans that later TensorRT versions load (they embed their runtime)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the build plan and exit; needs no TensorRT")
    a.add_quiet(p)
    p.set_defaults(func=run)


def build_options(args: argparse.Namespace):
    """The BuildOptions of the flags."""
    from overfeat.engines.plan import BuildOptions, DynamicRange, parse_bytes

    return BuildOptions(
        pyramid=args.pyramid,
        batch=args.batch,
        dynamic=DynamicRange.parse(args.dynamic) if args.dynamic else None,
        orientations=args.orientations,
        workspace=parse_bytes(args.workspace) if args.workspace else None,
        timing_cache=args.timing_cache,
        opt_level=args.opt_level,
        hardware_compatibility=args.hardware_compat,
        version_compatible=args.version_compatible,
    )


def run(args: argparse.Namespace) -> int:
    from overfeat.engines.build import build_engines, check_output_dir, timing_cache_path
    from overfeat.engines.plan import plan_build

    check_output_dir(args.output, create=False)
    plan = plan_build(args.model, build_options(args))
    print(plan.describe(args.output))
    if args.dry_run:
        return 0
    from overfeat.engines.compiler import TensorRTCompiler, tensorrt_missing

    if tensorrt_missing():
        raise BackendError(tensorrt_missing())
    check_output_dir(args.output)
    progress = Progress(enabled=not args.quiet)
    cache = timing_cache_path(plan, args.output)
    with progress.step("parsing the ONNX file with TensorRT"):
        compiler = TensorRTCompiler(plan, cache)
    manifest = build_engines(plan, args.output, compiler, progress)
    print(
        f"built {len(manifest.plans)} plans for TensorRT {manifest.tensorrt_version} on {manifest.gpu_name} "
        f"(compute capability {manifest.compute_capability}); wrote {manifest.path}"
    )
    return 0
