"""Detection mAP of other decodings of the same candidates: how much decoding alone can give.

    python benchmarks/decoding.py [--images 100] [--seed 77] [--model model.onnx]

Exports the committed checkpoint (fine stride) unless ``--model`` is given, generates
``--images`` multi-object test images (a seed training never saw), runs the six-scale pyramid
with flips through ONNX Runtime once per image and takes the detection candidates as
``overfeat eval`` does (every location and class with probability ≥ ``--score-threshold``).
It then decodes the same candidates in several ways and prints the mAP@0.5 of each and its
decoding time per image:

- **greedy merge**: the runtime's default (``overfeat eval``, ``infer --task detect``), at
  merge thresholds 0.3, 0.5 (the default) and 0.7;
- **NMS** (``--method nms``): per class, a box overlapping a better kept box by IoU > 0.5 is
  suppressed;
- **NMS in which the suppressed boxes vote** (``--method vote``): the same clusters, each
  scored with the sum of its members' scores (as the merge scores a box), its box their
  score-weighted mean;
- **class vote** (not in the runtime): clusters formed over all classes at once (NMS order,
  IoU > 0.5); each gives one detection, of the class with the largest summed score in it,
  scored with that sum, its box the score-weighted mean of that class's members. A window that
  reads part of an object as another class then votes instead of adding a detection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.datasets.shapes import generate  # noqa: E402
from overfeat.export import export_checkpoint  # noqa: E402
from overfeat.runtime import MergeConfig, Predictor, Result  # noqa: E402
from overfeat.runtime.boxes import nms_clusters  # noqa: E402
from overfeat.runtime.evaluate import Detections, average_precision  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
IOU = 0.5

Decoder = Callable[[Predictor, np.ndarray, np.ndarray, np.ndarray], Detections]


def runtime(method: str, threshold: float = 0.5) -> Decoder:
    """The runtime's decoding: ``Predictor.detect``'s ``method``, ``threshold`` the merge's."""

    def decode(p, boxes, scores, labels):
        p.merge_config = MergeConfig(threshold=threshold)
        found = p._merge_detections(boxes, scores, labels, method, IOU)
        return Detections.from_result(Result("detect", None, (1, 1), (), False, (), found, {}))

    return decode


def weighted_box(boxes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of boxes [M, 4] (M ≥ 1) with weights [M] ≥ 0; their plain mean if the
    weights sum to 0."""
    total = weights.sum()
    return (weights @ boxes) / total if total > 0 else boxes.mean(axis=0)


def class_vote(_p, boxes, scores, labels) -> Detections:
    out_boxes, out_scores, out_labels = [], [], []
    for rows in nms_clusters(boxes, scores, IOU):
        classes, at = np.unique(labels[rows], return_inverse=True)
        sums = np.bincount(at, weights=scores[rows])
        win = int(np.argmax(sums))  # ties: the smaller class index
        mine = rows[at == win]
        out_boxes.append(weighted_box(boxes[mine], scores[mine]))
        out_scores.append(sums[win])
        out_labels.append(classes[win])
    return Detections(
        np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(out_scores, dtype=np.float64),
        np.asarray(out_labels, dtype=np.int64),
    )


DECODERS: dict[str, Decoder] = {
    "greedy merge, threshold 0.5 (the runtime's default)": runtime("merge"),
    "greedy merge, threshold 0.3": runtime("merge", 0.3),
    "greedy merge, threshold 0.7": runtime("merge", 0.7),
    "NMS (--method nms)": runtime("nms"),
    "NMS, suppressed boxes vote (--method vote)": runtime("vote"),
    "class vote over all classes (not in the runtime)": class_vote,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="multi-object test images (default 100)")
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--score-threshold", type=float, default=0.1, help="detection candidates (as overfeat eval)")
    parser.add_argument("--model", help="an ONNX file (default: the committed checkpoint, exported)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images {args.images}: expected at least 1")
    candidates, truths, rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(Path(tmp) / "model.onnx")
        if not args.model:
            export_checkpoint(CHECKPOINT, model)
        with Predictor.from_path(model, pyramid="paper", flip=True) as p:
            classes = len(p.meta.classes)
            for i in range(args.images):
                s = generate(args.seed, "multi", "test", i)
                candidates.append(p._detection_candidates(p.dense(s.image), args.score_threshold))
                truths.append((s.boxes, s.labels))
            for name, decode in DECODERS.items():
                start = time.perf_counter()
                found = [decode(p, *c) for c in candidates]
                seconds = (time.perf_counter() - start) / args.images
                ap = float(np.nanmean(average_precision(found, truths, classes)))
                rows.append(f"| {name} | {ap:.3f} | {np.mean([len(d.scores) for d in found]):.1f} | {seconds:.3f} |")
    print(
        f"{args.images} multi-object test images (seed {args.seed}), {sum(len(c[1]) for c in candidates) / args.images:.0f} candidates per image:\n"
    )
    print("| decoding | mAP@0.5 | detections per image | decoding s / image |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
