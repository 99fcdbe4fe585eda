"""Greedy merge benchmark: the compiled kernel, the NumPy kernel and the literal reference, side by side.

    python benchmarks/merge.py [--sizes 200,400,800,1600,8000] [--large 50000] [--classes 5] [--repeat 5]
                               [--reference-boxes 200,400,800] [--regime trained-like,scattered] [--memory] [--json out.json]

Candidates imitate a six-scale localization with top-5 classes (1,575 windows per class on the
accurate model): per class, 1–2 objects; 70% of the boxes are that object's box with 8% noise
(as a trained regressor gives), 30% are scattered ("trained-like" regime); a second regime has
every box scattered (an untrained regressor). At each size both kernels run in turn within
each repeat (so both see the same machine load) and their results are compared bit for bit;
timings are medians over --repeat runs, on one core. The literal reference
(``tests/reference.py``, pure Python, O(n³)) runs once at the sizes of --reference-boxes and is
compared with both. --large sizes run the compiled kernel only. NMS and NMS with voting (IoU 0.5,
per class, as ``Predictor.detect`` runs them) are timed on the same candidates with each kernel
("compiled / numpy"), their clusters compared. --memory measures each
kernel's peak memory at the largest of --sizes and at --large, in a process of its own: the
growth of its peak resident set (VmHWM) over the merge.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.bench.run import machine  # noqa: E402
from overfeat.runtime.boxes import suppress, vote  # noqa: E402
from overfeat.runtime.kernels import compiled  # noqa: E402
from overfeat.runtime.merge import MergeConfig, greedy_merge  # noqa: E402
from tests.reference import greedy_merge_reference, merge_mismatch  # noqa: E402

REGIMES = {"trained-like": 0.7, "scattered": 0.0}
KERNELS = ("compiled", "numpy")


def candidates(rng: np.random.Generator, n: int, classes: int, clustered: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per = n // classes
    boxes, labels = [], []
    for c in range(classes):
        objects = [
            (rng.uniform(0, 400), rng.uniform(0, 300), rng.uniform(80, 300), rng.uniform(80, 300))
            for _ in range(rng.integers(1, 3))
        ]
        x, y, w, h = np.array(objects)[rng.integers(0, len(objects), per)].T
        noise = rng.normal(0, 0.08, (4, per))
        cx, cy = x + w / 2 + noise[0] * w, y + h / 2 + noise[1] * h
        ww, hh = w * np.exp(noise[2]), h * np.exp(noise[3])
        scattered = rng.random(per) >= clustered
        k = int(scattered.sum())
        cx[scattered], cy[scattered] = rng.uniform(0, 600, k), rng.uniform(0, 500, k)
        ww[scattered], hh[scattered] = rng.uniform(30, 300, k), rng.uniform(30, 300, k)
        boxes.append(np.stack([cx - ww / 2, cy - hh / 2, cx + ww / 2, cy + hh / 2], axis=1))
        labels.append(np.full(per, c))
    return np.concatenate(boxes), rng.uniform(0, 1, per * classes), np.concatenate(labels)


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("boxes", "scores", "classes", "counts", "labels"))


def side_by_side(repeat: int, inputs, kernels=KERNELS) -> tuple[dict[str, float], dict]:
    """Median seconds per kernel, the kernels taking turns in each repeat; and their results."""
    times: dict[str, list[float]] = {k: [] for k in kernels}
    results = {}
    for _ in range(repeat):
        for kernel in kernels:
            start = time.perf_counter()
            results[kernel] = greedy_merge(*inputs, MergeConfig(kernel=kernel))
            times[kernel].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, results


def suppression(repeat: int, inputs) -> dict[str, float]:
    """Median seconds of NMS (every class at once, as ``Predictor.detect`` runs it) and of NMS
    with voting, with each kernel, the kernels taking turns; their clusters compared."""
    boxes, scores, labels = inputs
    times: dict[str, list[float]] = {f"{m}_{k}": [] for m in ("nms", "vote") for k in KERNELS}
    founders = {}
    for _ in range(repeat):
        for kernel in KERNELS:
            start = time.perf_counter()
            founders[kernel] = suppress(boxes, scores, labels, 0.5, kernel)
            middle = time.perf_counter()
            vote(boxes, scores, founders[kernel])
            end = time.perf_counter()
            times[f"nms_{kernel}"].append(middle - start)
            times[f"vote_{kernel}"].append(end - start)
    if not np.array_equal(founders["compiled"], founders["numpy"]):
        raise SystemExit("the two kernels' NMS clusters differ")
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory(kernel: str, n: int, classes: int, regime: str) -> float:
    """MiB by which one merge raises the peak resident set of a fresh process."""
    code = (
        "import json, sys, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from merge import candidates\n"
        "from overfeat.bench.run import peak_rss\n"
        "from overfeat.runtime.merge import MergeConfig, greedy_merge\n"
        f"inputs = candidates(np.random.default_rng(0), {n}, {classes}, {REGIMES[regime]})\n"
        f"greedy_merge(inputs[0][:10], inputs[1][:10], inputs[2][:10], MergeConfig(kernel={kernel!r}))\n"
        "before = peak_rss()\n"
        f"greedy_merge(*inputs, MergeConfig(kernel={kernel!r}))\n"
        "print(json.dumps((peak_rss() - before) / 2**20))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def sizes(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive box counts, comma-separated")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[200, 400, 800, 1600, 8000], help="box counts timed with both kernels")
    parser.add_argument("--large", type=sizes, default=[50000], help="box counts timed with the compiled kernel only")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--reference-boxes", type=sizes, default=[200, 400, 800], help="box counts the literal reference also runs at"
    )
    parser.add_argument("--regime", default="trained-like,scattered", help="comma-separated: trained-like, scattered")
    parser.add_argument("--memory", action="store_true", help="peak memory of each kernel at the largest --sizes and at --large")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    chosen = [r.strip() for r in args.regime.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in REGIMES]
    if unknown or not chosen:
        parser.error(
            f"--regime: unknown {', '.join(unknown) or '(empty)'}; expected a comma-separated subset of {', '.join(REGIMES)}"
        )
    if args.classes < 1 or args.repeat < 1:
        parser.error("--classes and --repeat take a positive number")
    compiled()  # compiled or loaded from the cache before anything is timed
    print(f"{machine()['cpu']}; medians of {args.repeat}; {args.classes} classes", flush=True)
    rows = []
    for regime in chosen:
        rng = np.random.default_rng(0)
        for n in sorted(set(args.sizes) | set(args.reference_boxes)):
            inputs = candidates(rng, n, args.classes, REGIMES[regime])
            medians, results = side_by_side(args.repeat, inputs)
            medians |= suppression(args.repeat, inputs)
            row = {
                "regime": regime,
                "boxes": n,
                "compiled_ms": medians["compiled"] * 1e3,
                "numpy_ms": medians["numpy"] * 1e3,
                "speedup": medians["numpy"] / medians["compiled"],
                "identical": same(results["compiled"], results["numpy"]),
                "merged": len(results["compiled"].boxes),
                **{f"{k}_ms": v * 1e3 for k, v in medians.items() if k.startswith(("nms", "vote"))},
            }
            line = (
                f"{regime:<13} {n:>6} boxes  merge: compiled {row['compiled_ms']:8.2f} ms  numpy {row['numpy_ms']:9.2f} ms  "
                f"{row['speedup']:6.1f}x  identical {row['identical']}  nms: {row['nms_compiled_ms']:6.2f} / {row['nms_numpy_ms']:7.2f} ms  "
                f"vote: {row['vote_compiled_ms']:6.2f} / {row['vote_numpy_ms']:7.2f} ms"
            )
            if n in args.reference_boxes:
                start = time.perf_counter()
                ref = greedy_merge_reference(*inputs, 0.5, 1.0)
                row["reference_ms"] = (time.perf_counter() - start) * 1e3
                row["reference_identical"] = all(merge_mismatch(results[k], ref) is None for k in KERNELS)
                line += f"  reference {row['reference_ms']:10.1f} ms, identical {row['reference_identical']}"
            rows.append(row)
            print(line, flush=True)
        for n in args.large:
            inputs = candidates(rng, n, args.classes, REGIMES[regime])
            medians, results = side_by_side(args.repeat, inputs, kernels=("compiled",))
            rows.append(
                {"regime": regime, "boxes": n, "compiled_ms": medians["compiled"] * 1e3, "merged": len(results["compiled"].boxes)}
            )
            print(
                f"{regime:<13} {n:>6} boxes  compiled {medians['compiled'] * 1e3:8.2f} ms  ({len(results['compiled'].boxes)} merged boxes)",
                flush=True,
            )
        if args.memory:
            for n in [max(args.sizes), *args.large]:
                for kernel in KERNELS if n in args.sizes else ("compiled",):
                    mib = peak_memory(kernel, n, args.classes, regime)
                    rows.append({"regime": regime, "boxes": n, "kernel": kernel, "peak_mib": mib})
                    print(f"{regime:<13} {n:>6} boxes  {kernel:<8} peak memory +{mib:.1f} MiB", flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": machine(), "classes": args.classes, "repeat": args.repeat, "threshold": 0.5, "rows": rows}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
