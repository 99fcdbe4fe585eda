"""Greedy merge benchmark: fast merge vs the literal reference, side by side.

    python benchmarks/merge.py [--boxes 8000] [--classes 5] [--repeat 5] [--regime scattered] [--json out.json]

Candidates imitate a six-scale localization with top-5 classes (1,575 windows per class on the
accurate model): per class, 1–2 objects; 70% of the boxes are that object's box with 8% noise
(as a trained regressor gives), 30% are scattered ("scatter" regime); a second regime has
every box scattered (an untrained regressor). Timings are medians over --repeat runs in this
process (NumPy's element-wise work is single-threaded, so this is one core). The literal
reference is O(n³) in pure Python: it is timed at the smaller sizes of --reference-boxes only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.runtime.merge import MergeConfig, greedy_merge  # noqa: E402
from tests.reference import greedy_merge_reference, merge_mismatch  # noqa: E402


def candidates(rng: np.random.Generator, n: int, classes: int, clustered: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per = n // classes
    boxes, labels = [], []
    for c in range(classes):
        objects = [(rng.uniform(0, 400), rng.uniform(0, 300), rng.uniform(80, 300), rng.uniform(80, 300)) for _ in range(rng.integers(1, 3))]
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


def timed_once(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def timed(repeat: int, fn, *args) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=8000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference-boxes", default="100,200,400")
    parser.add_argument("--regime", default="trained-like,scattered", help="comma-separated: trained-like, scattered")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    regimes = {"trained-like": 0.7, "scattered": 0.0}
    chosen = [r.strip() for r in args.regime.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in regimes]
    if unknown or not chosen:
        parser.error(f"--regime: unknown {', '.join(unknown) or '(empty)'}; expected a comma-separated subset of {', '.join(regimes)}")
    config = MergeConfig()
    sizes = [int(v) for v in args.reference_boxes.split(",")]
    rows = []
    for regime in chosen:
        clustered = regimes[regime]
        rng = np.random.default_rng(0)
        for n in sizes:
            b, s, c = candidates(rng, n, args.classes, clustered)
            fast = timed(args.repeat, greedy_merge, b, s, c, config)
            ref, result = timed_once(greedy_merge_reference, b, s, c, config.threshold, config.centre_weight)
            same = merge_mismatch(greedy_merge(b, s, c, config), result) is None
            rows.append({"regime": regime, "boxes": n, "fast_ms": fast * 1e3, "reference_ms": ref * 1e3, "speedup": ref / fast, "identical": same})
            print(f"{regime:<13} {n:>6} boxes  fast {fast * 1e3:9.2f} ms  reference {ref * 1e3:10.1f} ms  speed-up {ref / fast:7.1f}x  identical {same}", flush=True)
        if args.boxes in sizes:
            continue
        b, s, c = candidates(rng, args.boxes, args.classes, clustered)
        fast = timed(args.repeat, greedy_merge, b, s, c, config)
        tracemalloc.start()
        merged = greedy_merge(b, s, c, config)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"regime": regime, "boxes": args.boxes, "fast_ms": fast * 1e3, "reference_ms": None, "peak_mib": peak / 2**20, "merged": len(merged.boxes)})
        print(f"{regime:<13} {args.boxes:>6} boxes  fast {fast * 1e3:9.2f} ms  ({len(merged.boxes)} merged boxes, peak {peak / 2**20:.0f} MiB)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"classes": args.classes, "threshold": config.threshold, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
