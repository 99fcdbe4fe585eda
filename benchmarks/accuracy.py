"""The paper-style accuracy table of the committed shapes model (OverFeat Table 2 / 5 style).

    python benchmarks/accuracy.py [--images 100] [--seed 77] [--out docs/accuracy.md]

Exports the committed checkpoint twice (fine stride and coarse), generates test splits
(single- and multi-object, a seed training never saw) and evaluates every combination of
{coarse, fine} × {1 scale, 6 scales, 6 scales + flips} with ONNX Runtime: top-1 and top-5
error and localization error on the single-object images, detection mAP@0.5 on the
multi-object images. Writes a Markdown table (and the raw figures as JSON beside it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.datasets.coco import read_coco, write_shapes  # noqa: E402
from overfeat.export import ExportSettings, export_checkpoint  # noqa: E402
from overfeat.fileio import write_json  # noqa: E402
from overfeat.progress import Progress  # noqa: E402
from overfeat.runtime import Predictor  # noqa: E402
from overfeat.runtime.evaluate import evaluate  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
SETTINGS = (("1 scale", 1, False), ("6 scales", "paper", False), ("6 scales + flips", "paper", True))


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def run(images: int, seed: int, work: Path) -> list[dict]:
    for coarse, name in ((False, "fine.onnx"), (True, "coarse.onnx")):
        export_checkpoint(CHECKPOINT, work / name, ExportSettings(coarse=coarse))
    for kind in ("single", "multi"):
        write_shapes(work / kind, "test", images, seed, kind, Progress())
    single, multi = read_coco(work / "single" / "test.json"), read_coco(work / "multi" / "test.json")
    rows = []
    for stride in ("coarse", "fine"):
        for label, pyramid, flip in SETTINGS:
            with Predictor.from_path(work / f"{stride}.onnx", pyramid=pyramid, flip=flip) as p:
                a = evaluate(p, single, ("classify", "localize"), progress=Progress())
                b = evaluate(p, multi, ("detect",), progress=Progress())
            rows.append(
                {
                    "stride": stride,
                    "setting": label,
                    "top1_error": a.top1_error,
                    "top5_error": a.top5_error,
                    "localization_error": a.localization_error,
                    "mean_ap": b.mean_ap,
                    "seconds_per_image": (a.seconds_per_image + b.seconds_per_image) / 2,
                }
            )
    return rows


def table(rows: list[dict], images: int, seed: int) -> str:
    lines = [
        f"Command: `python benchmarks/accuracy.py --images {images} --seed {seed}` ({images} single-object and {images} "
        "multi-object test images; ONNX Runtime on this machine's CPU).",
        "",
        "| stride | evaluation | top-1 error | top-5 error | localization error | detection mAP@0.5 | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ap = "-" if r["mean_ap"] is None else f"{r['mean_ap']:.3f}"
        lines.append(
            f"| {r['stride']} | {r['setting']} | {pct(r['top1_error'])} | {pct(r['top5_error'])} | {pct(r['localization_error'])} | {ap} | {r['seconds_per_image']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--out", default=None, help="write the table here (and the figures as .json beside it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = run(args.images, args.seed, Path(work))
    text = table(rows, args.images, args.seed)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        write_json(Path(args.out).with_suffix(".json"), {"images": args.images, "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
