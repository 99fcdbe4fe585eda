"""overfeat eval: accuracy on a COCO-style dataset (top-1/top-5, localization error, mAP@0.5)."""

from __future__ import annotations

import argparse
import dataclasses

from overfeat.progress import Progress

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy on a COCO-style dataset: top-1/top-5, localization error, mAP@0.5")
    p.add_argument(
        "--model", required=True, help="an ONNX file, an engine manifest.json, or a .safetensors checkpoint from 'overfeat train'"
    )
    p.add_argument("--data", required=True, help="a COCO-style JSON, or a directory holding one (see --split)")
    p.add_argument("--split", help="with a directory holding several JSON files: use DIR/SPLIT.json")
    p.add_argument(
        "--task",
        type=a.tasks,
        default=None,
        help="comma-separated: classify, localize, detect (default: all the model's heads allow)",
    )
    p.add_argument("--limit", type=a.positive_int, default=None, help="evaluate only the first N images")
    a.add_pyramid(p)
    a.add_backend(p, ("onnxruntime", "openvino", "tensorrt", "torch"))
    a.add_decode(p, a.EVAL_OPTIONS, candidate=" of a candidate")
    a.add_json(p)
    a.add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overfeat.datasets.coco import check_images, find_split, read_coco
    from overfeat.runtime import Predictor
    from overfeat.runtime.evaluate import EvaluationIncomplete, evaluate
    from overfeat.runtime.tasks import check_tasks

    a.check_outputs(args, "json")
    merge = a.merge_config(args)
    path = find_split(args.data, args.split)
    dataset = read_coco(path)  # its ground truth checked
    if args.limit:
        dataset = dataclasses.replace(dataset, records=dataset.records[: args.limit])
    check_images(dataset.records)  # every image there, readable and of its record's size, before the long work
    a.check_precision(args)
    with Predictor.from_path(
        args.model,
        args.backend,
        precision=args.precision,
        allow_host_code=args.allow_host_code,
        pyramid=args.pyramid,
        flip=not args.no_flip,
        merge=merge,
    ) as predictor:
        tasks = check_tasks(args.task, predictor.meta, args.model)  # the tasks the model's heads allow, by default
        decode = a.decode_config(args, tasks, a.EVAL_OPTIONS, several=True)
        try:
            result = evaluate(predictor, dataset, tasks, decode, progress=Progress(enabled=not args.quiet), source=args.model)
        except EvaluationIncomplete as stopped:
            _report(stopped.partial, path, args)  # what it has, marked incomplete; then the error and its exit code
            raise
    _report(result, path, args)
    return 0


def _report(result, path, args: argparse.Namespace) -> None:
    from overfeat.fileio import write_json

    result.data = str(path)
    print(result.table())
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}" + ("" if result.complete else " (incomplete)"))
