"""overfeat infer: classify, localize or detect objects in images."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from overfeat.errors import InputError
from overfeat.progress import Progress
from overfeat.runtime.tasks import TASKS

from . import args as a


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="classify, localize or detect objects in images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--model",
        required=True,
        help="an exported ONNX file, or an engine manifest.json (--backend triton: the server's network model)",
    )
    p.add_argument("--url", help="--backend triton: the server, HOST:PORT (http://, grpc://; port 8001 means gRPC)")
    p.add_argument(
        "--protocol", choices=("http", "grpc"), default=None, help="--backend triton: HTTP or gRPC (default: from --url)"
    )
    p.add_argument("--task", choices=TASKS, default="classify")
    a.add_pyramid(p)
    a.add_backend(p, ("onnxruntime", "openvino", "tensorrt", "triton"))
    p.add_argument("--providers", default=None, help="ONNX Runtime execution providers, comma-separated (default CPU)")
    a.add_decode(p, a.INFER_OPTIONS)
    p.add_argument("--max-pixels", type=a.positive_int, default=None, help="refuse larger images (default 64,000,000)")
    a.add_json(p, "write all results to this JSON file")
    p.add_argument("--draw", metavar="DIR", help="write each image with its results as a PNG into DIR")
    p.add_argument(
        "--draw-floor",
        type=a.number,
        default=None,
        metavar="F",
        help="--draw: leave out boxes scoring below F times the image's best box (default 0.05; 0 keeps weak boxes)",
    )
    p.add_argument(
        "--draw-overlap",
        type=a.number,
        default=None,
        metavar="T",
        help="--draw: leave out a box whose IoU with a better drawn box, of any class, is at least T (default 0.5; 1 keeps them)",
    )
    p.set_defaults(func=run)


def _draw_options(args: argparse.Namespace) -> tuple[float, float]:
    from pathlib import Path

    from overfeat.runtime.draw import FLOOR, MAX_BOXES, OVERLAP, check_draw_options

    given = [
        f"--draw-{name}" for name, value in (("floor", args.draw_floor), ("overlap", args.draw_overlap)) if value is not None
    ]
    if given and not args.draw:
        raise InputError(
            f"{' and '.join(given)} only change{'s' if len(given) == 1 else ''} the pictures, and no picture is drawn: add --draw DIR"
        )
    floor = FLOOR if args.draw_floor is None else args.draw_floor
    overlap = OVERLAP if args.draw_overlap is None else args.draw_overlap
    check_draw_options(floor, overlap, MAX_BOXES)
    if args.draw:  # a folder, made (with its parents) when the first picture is written
        from overfeat.fileio import check_output_path

        folder = Path(args.draw)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--draw {args.draw} is a file, expected a folder (a missing one is made)")
        check_output_path(folder / "picture.png", "--draw")
    return floor, overlap


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from overfeat.fileio import write_json
    from overfeat.runtime import Predictor
    from overfeat.runtime.backends import default_backend
    from overfeat.runtime.draw import draw
    from overfeat.runtime.image import DEFAULT_MAX_PIXELS

    floor, overlap = _draw_options(args)
    a.check_outputs(args, "json")
    merge = a.merge_config(args)
    decode = a.decode_config(args, (args.task,), a.INFER_OPTIONS)
    providers = args.providers.split(",") if args.providers else None
    if providers and (args.backend or ("triton" if args.url else default_backend(args.model))) != "onnxruntime":
        raise InputError("--providers selects ONNX Runtime execution providers; it does not apply to TensorRT engines")
    a.check_precision(args)
    results, failed = [], []
    common = dict(pyramid=args.pyramid, flip=not args.no_flip, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, merge=merge)
    if (args.backend == "triton") != (args.url is not None) or (args.protocol and args.backend != "triton"):
        raise InputError(
            "--backend triton and --url (and --protocol) go together: the server's address, and --model its network model"
        )
    if args.backend == "triton":
        opened = Predictor.from_url(args.url, args.model, protocol=args.protocol, **common)
    else:
        opened = Predictor.from_path(
            args.model,
            args.backend,
            providers=providers,
            precision=args.precision,
            allow_host_code=args.allow_host_code,
            **common,
        )
    with opened as predictor:
        predictor.check_task(args.task)
        progress = Progress(enabled=len(args.images) > 1)
        for number, image in enumerate(progress.track(args.images, "images"), 1):
            try:  # a bad image is reported and skipped; model and backend errors end the run
                array, source = predictor.load(image)
                result = dataclasses.replace(predictor.predict(array, (args.task,), decode)[args.task], image=source)
                print(result.table())
                if args.draw:
                    drawn = draw(
                        array, result, Path(args.draw) / f"{number:03d}_{Path(image).stem}.png", floor=floor, overlap=overlap
                    )
                    print(f"  drawn: {drawn}")
            except (InputError, OSError) as exc:
                print(f"overfeat: error: {a.as_flags(str(exc))}", file=sys.stderr)
                failed.append(image)
                continue
            results.append(result)
    if args.json:
        merges = args.task == "localize" or (args.task == "detect" and args.method == "merge")
        write_json(
            args.json,
            {
                "model": args.model,
                "task": args.task,
                "backend": predictor.backend_name,
                "precision": predictor.execution_precision,
                "merge_kernel": predictor.merge_kernel if merges else None,
                "results": [r.to_dict() for r in results],
                "failed": failed,
            },
            "--json",
        )
        print(f"wrote {args.json}")
    if failed:
        print(f"overfeat: {len(failed)} of {len(args.images)} images failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0
