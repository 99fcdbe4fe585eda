"""The ``overfeat`` command line.

Each verb parses its arguments here and calls one library function; heavy libraries are
imported by the verb that needs them. A user mistake prints one line,
``overfeat: error: ...``, and exits with code 2; a failed check exits with 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from overfeat import __version__
from overfeat.errors import BackendError, InputError, OverfeatError
from overfeat.geometry import ARCHS, parse_size
from overfeat.metadata import HEADS
from overfeat.progress import Progress
from overfeat.runtime.tasks import DECODE, EVAL_DECODE


def _heads(text: str) -> tuple[str, ...]:
    heads = tuple(h.strip() for h in text.split(",") if h.strip())
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads:
        raise argparse.ArgumentTypeError(f"unknown head {unknown[0] if unknown else text!r}: expected a comma-separated list of {', '.join(HEADS)}")
    return heads


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_size(s) for s in text.split(",") if s.strip())
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"got {text!r}, expected 'dynamic' or a positive integer")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a positive integer")
    return value


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint (or a random model) to ONNX, parity-checked")
    p.add_argument("--arch", choices=sorted(ARCHS), help="network: fast or accurate (default: from a checkpoint written by 'overfeat train')")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trained weights: .pt/.pth state_dict or .safetensors")
    source.add_argument("--random-init", action="store_true", help="random weights (for tests and speed benchmarks)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init and of the parity inputs (default 0)")
    p.add_argument("--num-classes", type=_positive_int, default=None, help="number of classes C (default 1000)")
    p.add_argument("--heads", type=_heads, default=None, help="comma-separated heads: cls, loc, det (default cls)")
    p.add_argument("--width", type=float, default=None, help="channel width multiplier (default 1.0, the paper's network)")
    p.add_argument("--shared-box", action="store_true", help="the regressor predicts 4 shared numbers instead of 4 per class")
    p.add_argument("--coarse", action="store_true", help="export the coarse map (no pooling offsets; stride 36 / 32)")
    p.add_argument("--classes", help="class names, one per line (default class_0 ...)")
    p.add_argument("--output", required=True, help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--batch", type=_batch, default=None, help="'dynamic' (default) or a fixed batch size")
    p.add_argument("--check-sizes", type=_sizes, default=None, help="extra HxW sizes for the parity check (default 300x333,257x421)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted by the parity check (default 1e-4)")
    p.add_argument("--report", help="parity report JSON (default: <output>.parity.json)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from overfeat.fileio import check_output_path
    from overfeat.metadata import read_class_names

    check_output_path(args.output, "output model")
    progress = Progress(enabled=not args.quiet)
    with progress.step("loading PyTorch"):
        from overfeat.export import DEFAULT_CHECK_SIZES, build_model, export_onnx, load_checkpoint
        from overfeat.export.torch_backend import checkpoint_info
    info = (checkpoint_info(args.checkpoint) if args.checkpoint else None) or {}
    for flag, key, given in (("--arch", "arch", args.arch), ("--num-classes", "num_classes", args.num_classes), ("--heads", "heads", args.heads), ("--width", "width", args.width)):
        if info and given is not None and given != info[key]:
            raise InputError(f"{flag} {given} contradicts checkpoint {args.checkpoint}, which was trained with {info[key]}; leave {flag} out")
    args.arch = args.arch or info.get("arch")
    if args.arch is None:
        raise InputError("--arch is required (fast or accurate) unless the checkpoint was written by 'overfeat train'")
    args.num_classes = args.num_classes or info.get("num_classes", 1000)
    args.heads = args.heads or info.get("heads", ("cls",))
    args.width = args.width if args.width is not None else info.get("width", 1.0)
    if info and not info["box_per_class"]:
        args.shared_box = True
    classes = read_class_names(args.classes, args.num_classes) if args.classes else info.get("classes")
    model = build_model(
        args.arch, args.num_classes, args.heads, args.width,
        loc_per_class=not args.shared_box, fine_stride=not args.coarse, seed=args.seed,
    )
    if args.checkpoint:
        with progress.step(f"loading {args.checkpoint}"):
            load_checkpoint(model, args.checkpoint)
    report = export_onnx(
        model, args.output, classes=classes, opset=args.opset, batch=args.batch,
        check_sizes=args.check_sizes if args.check_sizes is not None else DEFAULT_CHECK_SIZES,
        tolerance=args.tolerance, report_path=args.report, seed=args.seed, progress=progress,
    )
    print(report.table())
    print(f"wrote {args.output}")
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print an ONNX model's metadata, inputs, outputs and map sizes; check Q/DQ files against TensorRT's rules (exit 1 on a violation)")
    p.add_argument("model", help="an ONNX file written by 'overfeat export'")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from overfeat.calibration.inspect import inspect_onnx
    from overfeat.runtime.backends import runners_for

    info = inspect_onnx(args.model)
    print(info.report())
    for number, (backend, precisions, why) in enumerate(runners_for(info.meta)):
        print(f"{'runs with' if number == 0 else '':<10} {backend:<12} {precisions}" + (f"  (not here: {why})" if why else ""))
    return 0 if info.qdq is None or info.qdq.ok else 1


def _pyramid(text: str):
    if text in ("paper", "aspect"):
        return text
    if text.isdigit():
        return int(text)
    return _sizes(text)


# task options: argparse dest → (default, the tasks that read it). Each is parsed with default
# None, so that one given for none of a run's tasks can be refused (_task_options) rather than
# ignored; the help strings quote these defaults.
INFER_OPTIONS = {"top_k": (DECODE.top_k, ("classify", "localize")), "score_threshold": (DECODE.score_threshold, ("detect",)),
                 "min_score": (DECODE.min_score, ("localize",)), "method": (DECODE.method, ("detect",)),
                 "merge_threshold": (None, ("localize", "detect")), "iou_threshold": (DECODE.iou_threshold, ("detect",))}
EVAL_OPTIONS = {"score_threshold": (EVAL_DECODE.score_threshold, ("detect",)), "method": (EVAL_DECODE.method, ("detect",)),
                "merge_threshold": (None, ("localize", "detect")), "iou_threshold": (EVAL_DECODE.iou_threshold, ("detect",))}
METHOD_HELP = ("detect: per class, greedy merge (default, the paper's), NMS, or NMS in which the boxes a kept box suppresses vote "
               "(score-weighted box, summed score)")
MERGE_THRESHOLD_HELP = "localize, and detect by merge: the greedy merge's largest dissimilarity that still merges (default 0.5)"
PRECISION_HELP = ("--backend openvino: the arithmetic of the layers that are not quantized, fp32 (default) or bf16 "
                  "(several times faster on CPUs with AMX; check it with 'overfeat convert --precision bf16')")
MERGE_KERNELS = ("auto", "compiled", "numpy")  # overfeat.runtime.merge.KERNELS, without importing NumPy here
MERGE_KERNEL_HELP = ("the greedy merge's implementation, the same result either way: 'compiled' (numba, the 'fast' extra), 'numpy', "
                     "or 'auto' (default: compiled where numba is installed)")
IOU_THRESHOLD_HELP = f"detect by nms or vote: the IoU with a kept box at which a box of its class is suppressed (default {INFER_OPTIONS['iou_threshold'][0]})"


def _task_options(args: argparse.Namespace, tasks: Sequence[str], options: dict, *, several: bool = False) -> None:
    """Refuse a task option given on the command line that none of ``tasks`` reads; fill in the
    defaults of those not given. ``several``: ``--task`` takes a list (eval), so the advice is to
    add a task rather than to switch to it."""
    for dest, (default, readers) in options.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        elif not set(tasks) & set(readers):
            flag = "--" + dest.replace("_", "-")
            what = " or ".join(f"--task {t}" for t in readers)
            run = f"this run's task{'s are' if len(tasks) > 1 else ' is'} {', '.join(tasks)}"
            advice = f"add {' or '.join(readers)} to --task" if several else f"use {what}"
            raise InputError(f"{flag} applies to {what} only, but {run}: leave it out, or {advice}")


def _method_options(args: argparse.Namespace, tasks: Sequence[str]) -> None:
    """Refuse a threshold given for a detection method that does not read it. Runs before
    :func:`_task_options` fills in the defaults, so that only thresholds given are refused."""
    if "detect" not in tasks:
        return  # _task_options refuses detection's options
    method = args.method or "merge"
    if args.merge_threshold is not None and method != "merge" and "localize" not in tasks:
        raise InputError(f"--merge-threshold sets the greedy merge; --method {method} does not merge: leave it out, or use --method merge")
    if args.iou_threshold is not None and method == "merge":
        raise InputError("--iou-threshold sets the suppression of --method nms and --method vote; the greedy merge (--method merge, "
                         "the default) suppresses nothing: leave it out, or add --method nms or --method vote")


def _precision_option(args: argparse.Namespace) -> None:
    if args.precision is not None and args.backend != "openvino":
        raise InputError(f"--precision {args.precision} sets OpenVINO's execution precision: add --backend openvino")


def _probability(option: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise InputError(f"{option} must be within 0..1, got {value}")


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="classify, localize or detect objects in images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--model", required=True, help="an exported ONNX file, or an engine manifest.json")
    p.add_argument("--task", choices=("classify", "localize", "detect"), default="classify")
    p.add_argument("--top-k", type=_positive_int, default=None, help=f"classes considered (classify, localize; default {INFER_OPTIONS['top_k'][0]})")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), 'aspect', a number of scales, or HxW,HxW,...")
    p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), default=None, help="default: from the model file type (ONNX: onnxruntime)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help=PRECISION_HELP)
    p.add_argument("--providers", default=None, help="ONNX Runtime execution providers, comma-separated (default CPU)")
    p.add_argument("--score-threshold", type=float, default=None, help=f"detect: least per-location probability (default {INFER_OPTIONS['score_threshold'][0]})")
    p.add_argument("--min-score", type=float, default=None, help=f"localize: least per-location class probability of a box (default {INFER_OPTIONS['min_score'][0]})")
    p.add_argument("--method", choices=("merge", "nms", "vote"), default=None, help=METHOD_HELP)
    p.add_argument("--merge-threshold", type=float, default=None, help=MERGE_THRESHOLD_HELP)
    p.add_argument("--iou-threshold", type=float, default=None, help=IOU_THRESHOLD_HELP)
    p.add_argument("--merge-kernel", choices=MERGE_KERNELS, default="auto", help=MERGE_KERNEL_HELP)
    p.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images (default 64,000,000)")
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--draw", metavar="DIR", help="write each image with its results as a PNG into DIR")
    p.add_argument("--draw-floor", type=float, default=None, metavar="F",
                   help="--draw: leave out boxes scoring below F times the image's best box (default 0.05; 0 keeps weak boxes)")
    p.add_argument("--draw-overlap", type=float, default=None, metavar="T",
                   help="--draw: leave out a box whose IoU with a better drawn box, of any class, is at least T (default 0.5; 1 keeps them)")
    p.set_defaults(func=_run_infer)


def _run_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from overfeat.fileio import check_output_path, write_json
    from overfeat.runtime import DecodeConfig, MergeConfig, Predictor
    from overfeat.runtime.backends import default_backend
    from overfeat.runtime.draw import FLOOR, MAX_BOXES, OVERLAP, check_draw_options, draw
    from overfeat.runtime.image import DEFAULT_MAX_PIXELS

    given = [f"--draw-{name}" for name, value in (("floor", args.draw_floor), ("overlap", args.draw_overlap)) if value is not None]
    if given and not args.draw:
        raise InputError(f"{' and '.join(given)} only change{'s' if len(given) == 1 else ''} the pictures, and no picture is drawn: add --draw DIR")
    floor = FLOOR if args.draw_floor is None else args.draw_floor
    overlap = OVERLAP if args.draw_overlap is None else args.draw_overlap
    check_draw_options(floor, overlap, MAX_BOXES)
    if args.json:
        check_output_path(args.json, "--json")
    if args.draw and not Path(args.draw).is_dir():
        raise InputError(f"--draw {args.draw}: directory does not exist; create it first")
    _probability("--score-threshold", args.score_threshold)
    _probability("--min-score", args.min_score)
    _probability("--iou-threshold", args.iou_threshold)
    _method_options(args, (args.task,))
    _task_options(args, (args.task,), INFER_OPTIONS)
    merge = MergeConfig(kernel=args.merge_kernel) if args.merge_threshold is None else MergeConfig(threshold=args.merge_threshold, kernel=args.merge_kernel)
    decode = DecodeConfig(top_k=args.top_k, min_score=args.min_score, score_threshold=args.score_threshold, method=args.method,
                          iou_threshold=args.iou_threshold)
    providers = args.providers.split(",") if args.providers else None
    if providers and (args.backend or default_backend(args.model)) != "onnxruntime":
        raise InputError("--providers selects ONNX Runtime execution providers; it does not apply to TensorRT engines")
    _precision_option(args)
    results, failed = [], []
    with Predictor.from_path(
        args.model, args.backend, providers=providers, precision=args.precision, pyramid=args.pyramid, flip=not args.no_flip,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, merge=merge,
    ) as predictor:
        predictor.check_task(args.task)
        progress = Progress(enabled=len(args.images) > 1)
        for number, image in enumerate(progress.track(args.images, "images"), 1):
            try:  # a bad image is reported and skipped; model and backend errors end the run
                array, source = predictor.load(image)
                result = dataclasses.replace(predictor.predict(array, (args.task,), decode)[args.task], image=source)
                print(_table(result))
                if args.draw:
                    drawn = draw(array, result, Path(args.draw) / f"{number:03d}_{Path(image).stem}.png", floor=floor, overlap=overlap)
                    print(f"  drawn: {drawn}")
            except (InputError, OSError) as exc:
                print(f"overfeat: error: {exc}", file=sys.stderr)
                failed.append(image)
                continue
            results.append(result)
    if args.json:
        merges = args.task == "localize" or (args.task == "detect" and args.method == "merge")
        write_json(args.json, {"model": args.model, "task": args.task, "backend": predictor.backend_name, "precision": predictor.execution_precision,
                               "merge_kernel": predictor.merge_kernel if merges else None,
                               "results": [r.to_dict() for r in results], "failed": failed})
        print(f"wrote {args.json}")
    if failed:
        print(f"overfeat: {len(failed)} of {len(args.images)} images failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def _table(result) -> str:
    lines = [f"{result.image}  ({result.size[1]}x{result.size[0]}, {len(result.scales)} scales{', flip' if result.flip else ''})"]
    if result.task == "classify":
        lines += [f"  {rank}. {c.name:<20} {c.score:8.4f}" for rank, c in enumerate(result.classes, 1)]
    elif not result.boxes:
        lines.append("  no boxes")
    for b in result.boxes[:20]:
        box = ", ".join(f"{v:7.1f}" for v in b.box)
        lines.append(f"  {b.name:<20} {b.score:9.3f}  [{box}]  {b.members:>4} merged")
    if len(result.boxes) > 20:
        lines.append(f"  ... {len(result.boxes) - 20} more boxes (all in --json)")
    return "\n".join(lines)


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="generate datasets")
    which = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    shapes = which.add_parser("shapes", help="the procedurally generated shapes dataset (PNG + COCO JSON)")
    shapes.add_argument("--out", required=True, help="dataset directory (created if missing)")
    shapes.add_argument("--split", choices=("train", "val", "test"), required=True)
    shapes.add_argument("--count", type=_positive_int, required=True, help="number of images")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--kind", choices=("single", "multi"), default="single", help="one object per image, or 0-6 (default single)")
    shapes.set_defaults(func=_run_shapes)


def _run_shapes(args: argparse.Namespace) -> int:
    from overfeat.datasets.coco import write_shapes

    path = write_shapes(args.out, args.split, args.count, args.seed, args.kind, Progress())
    print(f"wrote {args.count} images and {path}")
    return 0


def _tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    known = ("classify", "localize", "detect")
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(f"unknown task {unknown[0] if unknown else text!r}: expected a comma-separated list of {', '.join(known)}")
    return tasks


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy on a COCO-style dataset: top-1/top-5, localization error, mAP@0.5")
    p.add_argument("--model", required=True, help="an ONNX file, an engine manifest.json, or a .safetensors checkpoint from 'overfeat train'")
    p.add_argument("--data", required=True, help="a COCO-style JSON, or a directory holding one (see --split)")
    p.add_argument("--split", help="with a directory holding several JSON files: use DIR/SPLIT.json")
    p.add_argument("--task", type=_tasks, default=None, help="comma-separated: classify, localize, detect (default: all the model's heads allow)")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), 'aspect', a number of scales, or HxW,HxW,...")
    p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt", "torch"), default=None, help="default: from the model file type (ONNX: onnxruntime)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help=PRECISION_HELP)
    p.add_argument("--score-threshold", type=float, default=None, help=f"detect: least per-location probability of a candidate (default {EVAL_OPTIONS['score_threshold'][0]})")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N images")
    p.add_argument("--method", choices=("merge", "nms", "vote"), default=None, help=METHOD_HELP)
    p.add_argument("--merge-threshold", type=float, default=None, help=MERGE_THRESHOLD_HELP)
    p.add_argument("--iou-threshold", type=float, default=None, help=IOU_THRESHOLD_HELP)
    p.add_argument("--merge-kernel", choices=MERGE_KERNELS, default="auto", help=MERGE_KERNEL_HELP)
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from overfeat.datasets.coco import find_split, read_coco
    from overfeat.fileio import check_output_path, write_json
    from overfeat.runtime import DecodeConfig, MergeConfig, Predictor
    from overfeat.runtime.evaluate import evaluate
    from overfeat.runtime.tasks import check_tasks

    if args.json:
        check_output_path(args.json, "--json")
    _probability("--score-threshold", args.score_threshold)
    _probability("--iou-threshold", args.iou_threshold)
    merge = MergeConfig(kernel=args.merge_kernel) if args.merge_threshold is None else MergeConfig(threshold=args.merge_threshold, kernel=args.merge_kernel)
    path = find_split(args.data, args.split)
    dataset = read_coco(path)
    if args.limit:
        dataset = dataclasses.replace(dataset, records=dataset.records[: args.limit])
    _precision_option(args)
    with Predictor.from_path(args.model, args.backend, precision=args.precision, pyramid=args.pyramid, flip=not args.no_flip, merge=merge) as predictor:
        tasks = check_tasks(args.task, predictor.meta, args.model)  # the tasks the model's heads allow, by default
        _method_options(args, tasks)
        _task_options(args, tasks, EVAL_OPTIONS, several=True)
        decode = DecodeConfig(score_threshold=args.score_threshold, method=args.method, iou_threshold=args.iou_threshold)
        result = evaluate(predictor, dataset, tasks, decode, progress=Progress(enabled=not args.quiet), source=args.model)
    result.data = str(path)
    print(result.table())
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def _add_check(p: argparse.ArgumentParser, default_source: str) -> None:
    g = p.add_argument_group("accuracy check against the fp32 model")
    g.add_argument("--check", metavar="DATA", help=f"held-out images: a directory, a COCO JSON (labelled: adds the eval metrics) or shapes:SPLIT:N (default: {default_source})")
    g.add_argument("--check-images", type=_positive_int, default=100, help="held-out images used (default 100)")
    g.add_argument("--no-check", action="store_true", help="write the converted model without checking it")
    g.add_argument("--min-top1-agreement", type=float, default=0.99, help="least share of images whose top-1 class stays the same (default 0.99)")
    g.add_argument("--max-map-drop", type=float, default=0.01, help="largest drop of detection mAP@0.5, labelled images only (default 0.01, one point)")
    g.add_argument("--check-backend", choices=("onnxruntime", "openvino"), default="onnxruntime",
                   help="what runs the converted model in the check (default onnxruntime; openvino judges it as OpenVINO will run it); the fp32 reference runs in ONNX Runtime")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), 'aspect', a number of scales, or HxW,HxW,...")
    p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")
    p.add_argument("--report", help="the report JSON (default: <output>.check.json)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _check_config(args: argparse.Namespace):
    from overfeat.calibration.gate import GateConfig
    from overfeat.calibration.pipeline import CheckConfig

    if args.no_check:
        if args.check:
            raise InputError("--check and --no-check contradict each other; give one")
        return None
    return CheckConfig(args.check, args.check_images, args.seed, GateConfig(args.min_top1_agreement, args.max_map_drop), args.check_backend)


def _stem(output: str) -> str:
    return output[:-5] if output.endswith(".onnx") else output


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="INT8: calibrate, quantize to Q/DQ by TensorRT's rules, check against fp32")
    p.add_argument("--model", required=True, help="the fp32 ONNX file from 'overfeat export'")
    p.add_argument("--images", required=True, help="calibration images: a directory, a COCO JSON or shapes:SPLIT:N")
    p.add_argument("--method", choices=("entropy", "minmax", "percentile"), default="entropy", help="activation range method (default entropy)")
    p.add_argument("--percentile", type=float, default=None, help="percentile method: the percentile of |activation| kept (default 99.99)")
    p.add_argument("--max-images", type=_positive_int, default=64, help="calibration images used (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image sampling (default 0)")
    p.add_argument("--exclude", default="", help="comma-separated Conv node names kept in float")
    p.add_argument("--auto-exclude", action="store_true", help="when the check fails, keep the most sensitive layers in float until it passes")
    p.add_argument("--cache", help="activation range cache (default: <output>.calib.json); reused for the same model, method and images")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write a range cache")
    p.add_argument("--output", required=True, help="the INT8 ONNX file to write")
    _add_check(p, "the images after the calibration images")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from overfeat.calibration.pipeline import CalibrateConfig, calibrate
    from overfeat.calibration.ranges import Method
    from overfeat.fileio import check_output_path

    check_output_path(args.output, "--output")
    if args.cache and args.no_cache:
        raise InputError("--cache and --no-cache contradict each other; give one")
    cache = None if args.no_cache else args.cache or _stem(args.output) + ".calib.json"
    config = CalibrateConfig(
        Method(args.method, args.percentile), args.images, args.max_images, args.seed, args.pyramid, not args.no_flip,
        tuple(e.strip() for e in args.exclude.split(",") if e.strip()), args.auto_exclude, cache, _check_config(args),
    )
    report = calibrate(args.model, args.output, config, Progress(enabled=not args.quiet), args.report or _stem(args.output) + ".check.json")
    print(report.table())
    return 0 if report.written else 1


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="FP16: weights and activations fp16, inputs/outputs fp32, checked against fp32; "
                                        "bf16: the accuracy check of OpenVINO's bf16 execution (no file written)")
    p.add_argument("--precision", choices=("fp16", "bf16"), required=True,
                   help="fp16: write an fp16 file; bf16: check the fp32 file run in bf16 by OpenVINO (INT8: 'overfeat calibrate')")
    p.add_argument("--model", required=True, help="the fp32 ONNX file from 'overfeat export'")
    p.add_argument("--output", help="the converted ONNX file to write (fp16 only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out image order (default 0)")
    _add_check(p, "none; give one or --no-check")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from overfeat.calibration.pipeline import convert

    if args.precision == "fp16" and not args.output:
        raise InputError("convert --precision fp16 writes a model: give --output")
    default_report = _stem(args.output) + ".check.json" if args.output else _stem(args.model) + f".{args.precision}.check.json"
    report = convert(args.model, args.output, args.precision, _check_config(args), args.pyramid, not args.no_flip,
                     Progress(enabled=not args.quiet), args.report or default_report)
    print(report.table())
    if report.output is None:
        return 0 if report.check is not None and report.check.passed else 1
    return 0 if report.written else 1


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a reduced-width accurate model on the shapes dataset (cls, then loc, then det)")
    p.add_argument("--out", required=True, help="the .safetensors checkpoint to write (fp16)")
    p.add_argument("--width", type=float, default=1 / 12, help="channel width multiplier (default 1/12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single", type=_positive_int, default=3000, help="single-object training images (default 3000)")
    p.add_argument("--multi", type=int, default=3000, help="multi-object training images (default 3000)")
    p.add_argument("--steps", default="4000,1500,800", help="steps of the classifier, regressor, detector stages (default 4000,1500,800)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of each stage (default 3e-3)")
    p.add_argument("--batch", type=_positive_int, default=16, help="crops per step (default 16)")
    p.add_argument("--grid", type=_positive_int, default=5, help="each crop's output map is GRID×GRID windows (default 5: 365×365 crops)")
    p.add_argument("--paper-trunk", action="store_true", help="stage 1 trains the trunk for the cls and det heads only, as the paper (default: the loc head joins it)")
    p.add_argument("--workers", type=_positive_int, default=2, help="processes generating the images (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from overfeat.fileio import check_output_path

    check_output_path(args.out, "--out")
    if not args.out.endswith(".safetensors"):
        raise InputError(f"--out {args.out}: the checkpoint is written as safetensors; give a .safetensors file name")
    try:
        steps = tuple(int(v) for v in args.steps.split(","))
    except ValueError:
        raise InputError(f"--steps {args.steps!r}: expected three comma-separated integers") from None
    progress = Progress(enabled=not args.quiet)
    with progress.step("loading PyTorch"):
        from overfeat.training.train import TrainConfig, save_checkpoint, train_shapes
    config = TrainConfig(width=args.width, seed=args.seed, single=args.single, multi=args.multi, steps=steps, batch=args.batch, grid=args.grid, workers=args.workers, lr=args.lr, paper_trunk=args.paper_trunk)
    model, log = train_shapes(config, progress)
    save_checkpoint(model, args.out, config, log)
    print(f"trained in {log['seconds']:.0f} s; wrote {args.out}")
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="TensorRT engines: one plan per pyramid size (or one dynamic profile) and manifest.json")
    p.add_argument("--model", required=True, help="an ONNX file from 'overfeat export', 'calibrate' or 'convert'; its precision is the engines'")
    p.add_argument("--output", required=True, help="directory for the plans, the timing cache and manifest.json (created if missing)")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), a number of scales, or HxW,HxW,...; 'aspect' only with --dynamic")
    p.add_argument("--orientations", choices=("both", "landscape"), default="both",
                   help="build the paper sizes for portrait images too (both, default) or landscape only")
    p.add_argument("--batch", type=_positive_int, default=2, help="batch of each plan (default 2: the image and its mirror; 1 for --no-flip)")
    p.add_argument("--dynamic", metavar="MIN:OPT:MAX", default=None, help="one plan with a dynamic profile, sizes HxW, e.g. 245x245:317x389:569x569")
    p.add_argument("--workspace", default=None, help="builder workspace limit, e.g. 4GiB (default: TensorRT's)")
    p.add_argument("--timing-cache", default=None, help="timing cache file, read and updated (default: OUTPUT/timing.cache)")
    p.add_argument("--opt-level", type=int, default=None, help="builder optimization level 0-5 (default: TensorRT's, 3)")
    p.add_argument("--hardware-compat", choices=("none", "ampere+", "same-compute-capability"), default="none",
                   help="plans that load on other GPUs: ampere+ (compute capability 8.0 or later) or same-compute-capability (TensorRT 10.9+)")
    p.add_argument("--version-compatible", action="store_true", help="plans that later TensorRT versions load (they embed their runtime)")
    p.add_argument("--dry-run", action="store_true", help="print the build plan and exit; needs no TensorRT")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_build)


def _build_options(args: argparse.Namespace):
    from overfeat.engines.plan import BuildOptions, DynamicRange, parse_bytes

    return BuildOptions(
        pyramid=args.pyramid, batch=args.batch, dynamic=DynamicRange.parse(args.dynamic) if args.dynamic else None,
        orientations=args.orientations, workspace=parse_bytes(args.workspace) if args.workspace else None,
        timing_cache=args.timing_cache, opt_level=args.opt_level, hardware_compatibility=args.hardware_compat,
        version_compatible=args.version_compatible,
    )


def _run_build(args: argparse.Namespace) -> int:
    from overfeat.engines.build import build_engines, check_output_dir, timing_cache_path
    from overfeat.engines.plan import plan_build

    plan = plan_build(args.model, _build_options(args))
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
    print(f"built {len(manifest.plans)} plans for TensorRT {manifest.tensorrt_version} on {manifest.gpu_name} "
          f"(compute capability {manifest.compute_capability}); wrote {manifest.path}")
    return 0


def _tolerance(text: str):
    from overfeat.engines.validate import Tolerance

    try:
        return Tolerance.parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="candidates (checkpoint, ONNX fp32/fp16/int8, TensorRT manifest) against a reference, through Polygraphy; exit 1 on a failure")
    p.add_argument("--reference", required=True, help="model.onnx or a .safetensors checkpoint from 'overfeat train'")
    p.add_argument("--candidate", action="append", required=True,
                   help="a model to check (repeat for more): .onnx (ONNX Runtime; FILE.onnx@openvino or FILE.onnx@openvino:bf16 in OpenVINO), .safetensors or an engine manifest.json")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of images, a COCO JSON, or shapes:SPLIT:N")
    source.add_argument("--random", type=_positive_int, help="this many random images instead")
    p.add_argument("--max-images", type=_positive_int, default=10, help="images taken from --images (default 10)")
    p.add_argument("--seed", type=int, default=0, help="order of --images, content of --random (default 0)")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), 'aspect', a number of scales, or HxW,HxW,...")
    p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")
    p.add_argument("--tolerance", type=_tolerance, action="append", default=[], metavar="PREC=STAT:ATOL:RTOL",
                   help="raw-output tolerance of a precision, ATOL as a fraction of the output's range "
                        "(defaults fp32=elemwise:0.0001:0.001, fp16=elemwise:0.02:0.01, int8=mean:0.025:0)")
    p.add_argument("--min-top5-overlap", type=float, default=None, help="also fail a candidate whose top-5 classes overlap the reference's less (0..1)")
    p.add_argument("--min-box-iou", type=float, default=None, help="also fail a candidate whose top boxes have a lower mean IoU with the reference's (0..1)")
    p.add_argument("--fail-on-skip", action="store_true", help="a candidate that cannot run here (TensorRT without a GPU) fails the run")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    from overfeat.engines.validate import DEFAULT_TOLERANCES, ValidateConfig, validate, write_report
    from overfeat.fileio import check_output_path

    if args.json:
        check_output_path(args.json, "--json")
    config = ValidateConfig(
        images=args.images, random=args.random, max_images=args.max_images, pyramid=args.pyramid, flip=not args.no_flip,
        seed=args.seed, tolerances={**DEFAULT_TOLERANCES, **dict(args.tolerance)},
        min_top5_overlap=args.min_top5_overlap, min_box_iou=args.min_box_iou, fail_on_skip=args.fail_on_skip,
    )
    report = validate(args.reference, args.candidate, config, Progress(enabled=not args.quiet))
    print(report.summary())
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    return 0 if report.passed else 1


def _merge_kernels(text: str) -> tuple[str, ...]:
    kernels = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kernels if k not in MERGE_KERNELS]
    if unknown or not kernels or len(set(kernels)) != len(kernels):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct names among {', '.join(MERGE_KERNELS)}, comma-separated")
    return kernels


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency per scale and end to end, side by side, against the machine's GEMM ceiling")
    p.add_argument("--model", action="append", default=[],
                   help="an ONNX file (ONNX Runtime; FILE.onnx@openvino or FILE.onnx@openvino:bf16 in OpenVINO) or engine manifest.json (TensorRT); repeat for more")
    p.add_argument("--torch", default=None, help="also a PyTorch eager baseline: a .safetensors checkpoint from 'overfeat train'")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of image files, a COCO JSON, or shapes:SPLIT:N")
    source.add_argument("--random", type=_positive_int, help="this many random images")
    p.add_argument("--max-images", type=_positive_int, default=4, help="images taken from --images (default 4)")
    p.add_argument("--pyramid", type=_pyramid, default="paper", help="'paper' (default), a number of scales, or HxW,HxW,...")
    p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image")
    p.add_argument("--repeat", type=_positive_int, default=3, help="counted rounds (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds, not counted (default 1)")
    p.add_argument("--seed", type=int, default=0, help="images and random batches (default 0)")
    p.add_argument("--windows", action="store_true", help="also time dense against per-window evaluation at the largest scale (equal outputs checked)")
    p.add_argument("--min-score", type=float, default=0.2, help="localize: least per-location class probability of a box (default 0.2; 0 keeps every location of the top classes)")
    p.add_argument("--merge-kernel", type=_merge_kernels, default=("auto",), metavar="KERNEL[,KERNEL]",
                   help="the greedy merge's kernel: auto (default), compiled or numpy; several, comma-separated, time each --model once per kernel, side by side")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--plot", help="write a PNG: latency per scale for each candidate and the end-to-end split")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from overfeat.bench.run import BenchConfig
    from overfeat.bench.suite import Inputs, benchmark, plot, table
    from overfeat.fileio import check_output_path, write_json

    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_output_path(path, flag)
    inputs = Inputs(images=args.images, random=args.random, max_images=args.max_images)
    config = BenchConfig(pyramid=args.pyramid, flip=not args.no_flip, repeat=args.repeat, warmup=args.warmup, seed=args.seed, min_score=args.min_score)
    report = benchmark(args.model, inputs, config, torch=args.torch, windows=args.windows, merge_kernels=args.merge_kernel,
                       progress=Progress(enabled=not args.quiet))
    print(table(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(report, args.plot)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="overfeat", description="Export, build and run OverFeat networks.")
    parser.add_argument("--version", action="version", version=f"overfeat {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_export(sub)
    _add_inspect(sub)
    _add_infer(sub)
    _add_datasets(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_calibrate(sub)
    _add_convert(sub)
    _add_build(sub)
    _add_validate(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OverfeatError as exc:
        print(f"overfeat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        print(f"overfeat: error: '{args.verb}' needs the package {exc.name!r}, which is not installed: "
              f"pip install 'overfeat[{_EXTRA.get(exc.name or '', 'export')}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overfeat: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading (head, less)
        sys.stderr.close()
        return 0


_EXTRA = {"tensorrt": "gpu", "cuda": "gpu", "polygraphy": "validate", "onnxruntime": "ort", "torch": "export", "onnx": "export", "onnxscript": "export", "safetensors": "export", "numba": "fast"}


if __name__ == "__main__":
    sys.exit(main())
