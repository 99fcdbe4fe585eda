"""Prepare the models ``docs/benchmarks.md`` reports and run ``overfeat bench`` on them.

    python benchmarks/latency.py full --arch accurate [--repeat 3] [--windows] [--openvino] --json docs/bench-accurate.json --plot docs/bench-accurate.png
    python benchmarks/latency.py full --arch fast [--repeat 3] [--openvino] --json docs/bench-fast.json --plot docs/bench-fast.png
    python benchmarks/latency.py shapes [--repeat 3] [--merge-kernel compiled,numpy] [--openvino] --json docs/bench-shapes.json --plot docs/bench-shapes.png
    python benchmarks/latency.py localize [--repeat 3] --json docs/bench-localize.json --plot docs/bench-localize.png

``full``: the paper's network at full width (cls head, 1000 classes, random weights: speed does
not depend on them) saved as a safetensors checkpoint, exported from it (so PyTorch and ONNX
hold the same weights), calibrated to INT8 (minmax on 8 generated images, no accuracy check);
then fp32 and int8 in ONNX Runtime and the checkpoint in PyTorch eager, side by side, on 4
random images at the six paper scales with flips.
``shapes``: the committed shapes model exported, converted to FP16 and calibrated to INT8
(minmax, 64 validation images, no check), with its checkpoint in PyTorch, on 4 generated test
images.
``--openvino`` adds the fp32 file in OpenVINO fp32 and bf16 and the INT8 file in OpenVINO.
``localize``: the full-size accurate network with the ``cls`` and ``loc`` heads (1000 classes,
random weights) exported to ONNX, run in ONNX Runtime fp32 with each post-processing kernel side
by side (``--merge-kernel compiled,numpy``) on 2 random images: classification and localization
with ``--min-score 0`` (every location of the top 5 classes per scale, with flips: 15,750
candidates per image, as random weights leave every probability far below the default floor).
``--merge-kernel`` is passed to ``overfeat bench`` (default: its own, ``auto``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.cli import main as cli  # noqa: E402
from overfeat.export import export_checkpoint  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"


def _run(args: list[str]) -> None:
    code = cli(args)
    if code != 0:
        raise SystemExit(f"overfeat {args[0]} failed with exit code {code}")


def _minmax_int8(model: Path, output: Path, images: int) -> None:
    """``model`` in INT8 by minmax on ``images`` generated validation images, without the check."""
    from overfeat.calibration.pipeline import CalibrateConfig, calibrate
    from overfeat.calibration.ranges import Method

    config = CalibrateConfig(Method("minmax"), f"shapes:val:{images}", images, cache=None, check=None)
    calibrate(str(model), str(output), config)


def _full_checkpoint(arch: str, path: Path, heads: tuple[str, ...] = ("cls",)) -> None:
    from safetensors.torch import save_file

    from overfeat.export import build_model

    model = build_model(arch, 1000, heads, 1.0, seed=0)
    info = {
        "arch": arch,
        "width": 1.0,
        "num_classes": 1000,
        "heads": list(heads),
        "classes": [f"class_{i}" for i in range(1000)],
        "box_per_class": True,
    }
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"overfeat.model": json.dumps(info)}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("full", "shapes", "localize"))
    parser.add_argument("--arch", choices=("accurate", "fast"), default="accurate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--windows", action="store_true")
    parser.add_argument("--merge-kernel", default=None, help="passed to overfeat bench (localize: compiled,numpy by default)")
    parser.add_argument(
        "--openvino",
        action="store_true",
        help="full, shapes: also OpenVINO fp32 and bf16 (the fp32 file) and int8 (the INT8 file)",
    )
    parser.add_argument("--json", required=True)
    parser.add_argument("--plot", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overfeat-bench-") as tmp:
        work = Path(tmp)
        kernels = args.merge_kernel
        report = ["--repeat", str(args.repeat), "--json", args.json, "--plot", args.plot]
        if args.which == "localize":
            checkpoint = work / "accurate-loc.safetensors"
            _full_checkpoint("accurate", checkpoint, ("cls", "loc"))
            model = work / "accurate-loc.onnx"
            export_checkpoint(checkpoint, model, check_sizes=())
            _run(
                [
                    "bench",
                    "--model",
                    str(model),
                    "--random",
                    "2",
                    "--merge-kernel",
                    kernels or "compiled,numpy",
                    "--min-score",
                    "0",
                    *report,
                ]
            )
            return
        if args.which == "full":
            checkpoint = work / f"{args.arch}.safetensors"
            _full_checkpoint(args.arch, checkpoint)
            models = [work / f"{args.arch}.onnx", work / f"{args.arch}.int8.onnx"]
            export_checkpoint(checkpoint, models[0], check_sizes=())
            _minmax_int8(models[0], models[1], 8)
            images = ["--random", "4"]
        else:
            checkpoint = CHECKPOINT
            models = [work / "shapes.onnx", work / "shapes.int8.onnx", work / "shapes.fp16.onnx"]
            export_checkpoint(checkpoint, models[0], check_sizes=())
            _minmax_int8(models[0], models[1], 64)
            _run(
                ["convert", "--precision", "fp16", "--model", str(models[0]), "--output", str(models[2]), "--no-check", "--quiet"]
            )
            images = ["--images", "shapes:test:4"]
        specs = [str(m) for m in models]
        if args.openvino:  # the fp32 file in OpenVINO fp32 and bf16, the INT8 file in OpenVINO
            specs += [f"{models[0]}@openvino", f"{models[0]}@openvino:bf16", f"{models[1]}@openvino"]
        bench = [
            "bench",
            *(a for m in specs for a in ("--model", m)),
            "--torch",
            str(checkpoint),
            *images,
            *report,
            *(["--merge-kernel", kernels] if kernels else []),
        ]
        _run([*bench, "--windows"] if args.windows else bench)


if __name__ == "__main__":
    main()
