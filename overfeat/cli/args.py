"""What the verbs share: argument types, argument groups, and the mapping of flags onto the
library's config objects.

Each flag that several verbs take is declared here once (``--pyramid``, ``--json``, the decode
options, the image sources, the accuracy check); a group's ``*_config`` function turns the parsed
flags into the one library object that owns them (:class:`overfeat.runtime.DecodeConfig`,
:class:`overfeat.runtime.MergeConfig`, :class:`overfeat.calibration.pipeline.CheckConfig`).
The library's errors name its parameters (``max_images``); :func:`as_flags` is the one place
that writes them as this command line's flags when the CLI prints a message.

Only the standard library and the light core are imported at module level: ``overfeat --help``
must not load NumPy.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence

from overfeat.errors import InputError
from overfeat.geometry import parse_size
from overfeat.metadata import HEADS
from overfeat.runtime.tasks import DECODE, EVAL_DECODE, METHODS, TASKS

# ------------------------------------------------------------------ argument types


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def choice_list(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated list of names among ``known``."""
    items = _items(text)
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown[0] if unknown else text!r}: expected a comma-separated list of {', '.join(known)}"
        )
    return items


def heads(text: str) -> tuple[str, ...]:
    return choice_list(text, HEADS, "head")


def tasks(text: str) -> tuple[str, ...]:
    return choice_list(text, TASKS, "task")


def sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_size(s) for s in _items(text))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"got {text!r}, expected 'dynamic' or a positive integer")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a positive integer")
    return value


def count(text: str) -> int:
    """A whole number ≥ 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a whole number ≥ 0")
    return int(text)


def number(text: str) -> float:
    """A finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a finite number")
    return value


def non_negative(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number ≥ 0")
    return value


def positive(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number > 0")
    return value


MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 − 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a whole number from 0 to {MAX_SEED}")
    return value


def pyramid(text: str):
    if text in ("paper", "aspect"):
        return text
    if text.isdigit():
        return int(text)
    return sizes(text)


MERGE_KERNELS = ("auto", "compiled", "numpy")  # overfeat.runtime.kernels.KERNELS, without importing NumPy here


def merge_kernels(text: str) -> tuple[str, ...]:
    kernels = _items(text)
    unknown = [k for k in kernels if k not in MERGE_KERNELS]
    if unknown or not kernels or len(set(kernels)) != len(kernels):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct names among {', '.join(MERGE_KERNELS)}, comma-separated")
    return kernels


# ------------------------------------------------------------------ groups


PYRAMID_HELP = "'paper' (default), 'aspect', a number of scales, or HxW,HxW,..."


def add_pyramid(p: argparse.ArgumentParser, help: str = PYRAMID_HELP, *, flip: bool = True) -> None:
    """--pyramid (sizes of the scales) and --no-flip (no mirrored image)."""
    p.add_argument("--pyramid", type=pyramid, default="paper", help=help)
    if flip:
        p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_json(p: argparse.ArgumentParser, help: str = "write the figures to this JSON file") -> None:
    p.add_argument("--json", help=help)


def check_outputs(args: argparse.Namespace, *dests: str) -> None:
    """Refuse, before any work, an output file given for ``dests`` that cannot be written."""
    from overfeat.fileio import check_output_path

    for dest in dests:
        if getattr(args, dest):
            check_output_path(getattr(args, dest), "--" + dest.replace("_", "-"))


PRECISION_HELP = (
    "--backend openvino: the arithmetic of the layers that are not quantized, fp32 (default) or bf16 "
    "(several times faster on CPUs with AMX; check it with 'overfeat convert --precision bf16')"
)


def add_backend(p: argparse.ArgumentParser, backends: Sequence[str]) -> None:
    """--backend (default from the model file), OpenVINO's --precision and TensorRT's --allow-host-code."""
    p.add_argument(
        "--backend", choices=tuple(backends), default=None, help="default: from the model file type (ONNX: onnxruntime)"
    )
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help=PRECISION_HELP)
    add_host_code(p)


def add_host_code(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-host-code",
        action="store_true",
        help="TensorRT: load version-compatible engines, which run the TensorRT code they embed (engines you trust only)",
    )


def check_precision(args: argparse.Namespace) -> None:
    if args.precision is not None and args.backend != "openvino":
        raise InputError(f"--precision {args.precision} sets OpenVINO's execution precision: add --backend openvino")


def add_images(p: argparse.ArgumentParser, max_images: int) -> None:
    """The images a verb runs on: --images DATA or --random N, and --max-images."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of image files, a COCO JSON, or shapes:SPLIT:N")
    source.add_argument("--random", type=positive_int, help="this many random images instead")
    p.add_argument(
        "--max-images", type=positive_int, default=max_images, help=f"images taken from --images (default {max_images})"
    )


# Decode options: argparse dest → (default, the tasks that read it). Each is parsed with default
# None, so that one given for none of a run's tasks is refused (decode_config) rather than
# ignored; the help strings quote these defaults.
INFER_OPTIONS = {
    "top_k": (DECODE.top_k, ("classify", "localize")),
    "score_threshold": (DECODE.score_threshold, ("detect",)),
    "min_score": (DECODE.min_score, ("localize",)),
    "method": (DECODE.method, ("detect",)),
    "merge_threshold": (None, ("localize", "detect")),
    "iou_threshold": (DECODE.iou_threshold, ("detect",)),
}
EVAL_OPTIONS = {
    "score_threshold": (EVAL_DECODE.score_threshold, ("detect",)),
    "method": (EVAL_DECODE.method, ("detect",)),
    "merge_threshold": (None, ("localize", "detect")),
    "iou_threshold": (EVAL_DECODE.iou_threshold, ("detect",)),
}
DECODE_HELP = {
    "top_k": "classes considered (classify, localize; default {})",
    "score_threshold": "detect: least per-location probability{} (default {})",
    "min_score": "localize: least per-location class probability of a box (default {})",
    "method": (
        "detect: per class, greedy merge (default, the paper's), NMS, or NMS in which the boxes a kept box suppresses vote "
        "(score-weighted box, summed score)"
    ),
    "merge_threshold": "localize, and detect by merge: the greedy merge's largest dissimilarity that still merges (default 0.5)",
    "iou_threshold": "detect by nms or vote: the IoU with a kept box at which a box of its class is suppressed (default {})",
    "merge_kernel": (
        "the greedy merge's implementation, the same result either way: 'compiled' (numba, the 'fast' extra), 'numpy', "
        "or 'auto' (default: compiled where numba is installed)"
    ),
}


def add_decode(p: argparse.ArgumentParser, options: dict, *, candidate: str = "") -> None:
    """The decode options a verb reads (``options``: INFER_OPTIONS or EVAL_OPTIONS), and --merge-kernel.
    ``candidate`` words the score threshold's help."""
    if "top_k" in options:
        p.add_argument("--top-k", type=positive_int, default=None, help=DECODE_HELP["top_k"].format(options["top_k"][0]))
    p.add_argument(
        "--score-threshold",
        type=number,
        default=None,
        help=DECODE_HELP["score_threshold"].format(candidate, options["score_threshold"][0]),
    )
    if "min_score" in options:
        p.add_argument("--min-score", type=number, default=None, help=DECODE_HELP["min_score"].format(options["min_score"][0]))
    p.add_argument("--method", choices=METHODS, default=None, help=DECODE_HELP["method"])
    p.add_argument("--merge-threshold", type=number, default=None, help=DECODE_HELP["merge_threshold"])
    p.add_argument(
        "--iou-threshold", type=number, default=None, help=DECODE_HELP["iou_threshold"].format(options["iou_threshold"][0])
    )
    p.add_argument("--merge-kernel", choices=MERGE_KERNELS, default="auto", help=DECODE_HELP["merge_kernel"])


def merge_config(args: argparse.Namespace):
    """The run's MergeConfig from --merge-threshold and --merge-kernel, after checking that the
    decode flags given are probabilities (before any model loads)."""
    from overfeat.runtime import MergeConfig

    for dest in ("score_threshold", "min_score", "iou_threshold"):
        value = getattr(args, dest, None)
        if value is not None and not 0 <= value <= 1:
            raise InputError(f"--{dest.replace('_', '-')} must be within 0..1, got {value}")
    if args.merge_threshold is None:
        return MergeConfig(kernel=args.merge_kernel)
    return MergeConfig(threshold=args.merge_threshold, kernel=args.merge_kernel)


def decode_config(args: argparse.Namespace, tasks: Sequence[str], options: dict, *, several: bool = False):
    """The run's DecodeConfig from the decode flags, after refusing a flag that none of
    ``tasks`` reads. ``several``: ``--task`` takes a list (eval), so the advice is to add a task
    rather than to switch to it."""
    from overfeat.runtime import DecodeConfig

    _method_options(args, tasks)
    for dest, (default, readers) in options.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        elif not set(tasks) & set(readers):
            flag = "--" + dest.replace("_", "-")
            what = " or ".join(f"--task {t}" for t in readers)
            run = f"this run's task{'s are' if len(tasks) > 1 else ' is'} {', '.join(tasks)}"
            advice = f"add {' or '.join(readers)} to --task" if several else f"use {what}"
            raise InputError(f"{flag} applies to {what} only, but {run}: leave it out, or {advice}")
    return DecodeConfig(
        **{k: getattr(args, k) for k in ("top_k", "min_score", "score_threshold", "method", "iou_threshold") if k in options}
    )


def _method_options(args: argparse.Namespace, tasks: Sequence[str]) -> None:
    """Refuse a threshold given for a detection method that does not read it (before the
    defaults are filled in, so that only thresholds given are refused)."""
    if "detect" not in tasks:
        return  # decode_config refuses detection's options
    method = args.method or "merge"
    if args.merge_threshold is not None and method != "merge" and "localize" not in tasks:
        raise InputError(
            f"--merge-threshold sets the greedy merge; --method {method} does not merge: leave it out, or use --method merge"
        )
    if args.iou_threshold is not None and method == "merge":
        raise InputError(
            "--iou-threshold sets the suppression of --method nms and --method vote; the greedy merge (--method merge, "
            "the default) suppresses nothing: leave it out, or add --method nms or --method vote"
        )


def add_check(p: argparse.ArgumentParser, default_source: str) -> None:
    """The accuracy check of a precision conversion against the fp32 model, and its report."""
    g = p.add_argument_group("accuracy check against the fp32 model")
    g.add_argument(
        "--check",
        metavar="DATA",
        help=f"held-out images: a directory, a COCO JSON (labelled: adds the eval metrics) or shapes:SPLIT:N (default: {default_source})",
    )
    g.add_argument("--check-images", type=positive_int, default=100, help="held-out images used (default 100)")
    g.add_argument("--no-check", action="store_true", help="write the converted model without checking it")
    g.add_argument(
        "--min-top1-agreement",
        type=number,
        default=0.99,
        help="least share of images whose top-1 class stays the same (default 0.99)",
    )
    g.add_argument(
        "--max-map-drop",
        type=number,
        default=0.01,
        help="largest drop of detection mAP@0.5, labelled images only (default 0.01, one point)",
    )
    g.add_argument(
        "--check-backend",
        choices=("onnxruntime", "openvino"),
        default="onnxruntime",
        help="what runs the converted model in the check (default onnxruntime; openvino judges it as OpenVINO will run it); the fp32 reference runs in ONNX Runtime",
    )
    add_pyramid(p)
    p.add_argument("--report", help="the report JSON (default: <output>.check.json)")
    add_quiet(p)


def check_config(args: argparse.Namespace):
    """The CheckConfig of add_check's flags, or None for --no-check."""
    from overfeat.calibration.gate import GateConfig
    from overfeat.calibration.pipeline import CheckConfig

    if args.no_check:
        if args.check:
            raise InputError("--check and --no-check contradict each other; give one")
        return None
    return CheckConfig(
        args.check, args.check_images, args.seed, GateConfig(args.min_top1_agreement, args.max_map_drop), args.check_backend
    )


# ------------------------------------------------------------------ messages

# A library parameter whose flag is not its name with dashes; see as_flags.
FLAGS = {
    "flip=False": "--no-flip",
    "check=None": "--no-check",
    "cache=None": "--no-cache",
    "allow_host_code=True": "--allow-host-code",
    "report_path": "--report",
    "hardware_compatibility": "--hardware-compat",
    "models": "--model",
    "candidates": "--candidate",
    "floor": "--draw-floor",
    "overlap": "--draw-overlap",
    "CheckConfig.images": "--check",
    "CheckConfig.count": "--check-images",
    "CheckConfig.backend": "--check-backend",
    "classes_file": "--classes",
}
_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*(?:=[^`\s]+)?)`")


def as_flags(message: str) -> str:
    """A library message as the command line says it: each parameter the library names in
    backquotes (`max_images`, `flip=False`) becomes its flag (--max-images, --no-flip)."""
    return _PARAMETER.sub(lambda m: FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)


# the extra that installs a package a verb imports on demand
EXTRA = {
    "tensorrt": "gpu",
    "cuda": "gpu",
    "polygraphy": "validate",
    "onnxruntime": "ort",
    "torch": "export",
    "onnx": "export",
    "onnxscript": "export",
    "safetensors": "export",
    "numba": "fast",
    "PIL": "images",
    "matplotlib": "images",
    "openvino": "openvino",
}
