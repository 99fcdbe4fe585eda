"""Where localization and detection go wrong: the quality of the regressor's boxes and what the
best-ranked detections are.

    python benchmarks/box_quality.py [--images 40] [--seed 77] [--model model.onnx]

Exports the committed checkpoint (fine stride) unless ``--model`` is given, generates
``--images`` single-object and multi-object test images (a seed training never saw), runs the
six-scale pyramid with flips through ONNX Runtime and prints:

1. **Raw boxes, per scale** (single-object images): the localization candidates of the image's
   own class (:meth:`Predictor.decode` with the defaults: top-5 classes, probability ≥ 0.2),
   the share with IoU ≥ 0.5 with the object and their median IoU, and how large the object is
   in the 221-pixel window at that scale.
2. **From candidates to the answer** (single-object images): the share of images with at least
   one candidate of the right class at IoU ≥ 0.5, whose best-scored merged box of the right
   class is right, and that are right by the ILSVRC rule (one of the top 5 merged boxes).
3. **The best-ranked detections** (multi-object images): each of the ``--top`` highest-scored
   merged detections of every image sorted into what it is (a hit; a duplicate of an object
   already found; the right class with IoU 0.1–0.5; another class over an object; background).
4. **What bounds mAP** (multi-object images, all detections): mAP as decoded; with every
   detection of another class over an object removed (an oracle that knows the classes: the
   object a detection overlaps most, at IoU ≥ 0.1, has another class); with right-class boxes
   of IoU 0.1–0.5 removed too. And recall (objects with a box of their class at IoU ≥ 0.5)
   among the candidates and after merging, by object size against the image's shorter side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.datasets.shapes import generate  # noqa: E402
from overfeat.export import export_checkpoint  # noqa: E402
from overfeat.runtime import Predictor  # noqa: E402
from overfeat.runtime.boxes import iou  # noqa: E402
from overfeat.runtime.evaluate import Detections, average_precision  # noqa: E402
from overfeat.runtime.merge import greedy_merge  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
KINDS = (
    "hit",
    "duplicate of an object already found",
    "right class, IoU 0.1-0.5",
    "right class, IoU < 0.1, over another object",
    "another class over an object (IoU >= 0.1)",
    "background (IoU < 0.1 with every object)",
)


def raw_boxes(p: Predictor, images: int, seed: int) -> tuple[list[dict], dict]:
    per_scale: dict[int, list] = {}
    answer = Counter()
    for i in range(images):
        s = generate(seed, "single", "test", i)
        truth, cls = s.boxes, int(s.labels[0])
        maps = p.dense(s.image)
        for k, m in enumerate(maps):  # the decoding of one scale alone, with every default
            boxes, _, labels = p._localization_candidates([m], 5, 0.2)
            mine = boxes[labels == cls]
            if len(mine):
                overlap = iou(mine, truth).max(axis=1)
                side = max(truth[0, 2] - truth[0, 0], truth[0, 3] - truth[0, 1]) * m.scale.size[0] / s.image.shape[0]
                per_scale.setdefault(k, []).append((overlap, side / p.meta.window, m.scale.size))
        boxes, scores, labels = p._localization_candidates(maps, 5, 0.2)
        merged = greedy_merge(boxes, scores, labels, p.merge_config)
        right = np.flatnonzero(merged.classes == cls)
        answer["candidate"] += bool(len(boxes[labels == cls])) and iou(boxes[labels == cls], truth).max() >= 0.5
        answer["best merged"] += bool(len(right)) and iou(merged.boxes[right[:1]], truth).max() >= 0.5
        answer["top 5"] += any(
            merged.classes[k] == cls and iou(merged.boxes[k : k + 1], truth).max() >= 0.5
            for k in range(min(5, len(merged.boxes)))
        )
    rows = []
    for k in sorted(per_scale):
        overlaps = np.concatenate([o for o, _, _ in per_scale[k]])
        rows.append(
            {
                "scale": per_scale[k][0][2],
                "boxes": len(overlaps),
                "iou_ge_half": float((overlaps >= 0.5).mean()),
                "median_iou": float(np.median(overlaps)),
                "object_in_window": float(np.median([r for _, r, _ in per_scale[k]])),
            }
        )
    return rows, {key: answer[key] / images for key in ("candidate", "best merged", "top 5")}


SIZES = ((0.0, 0.2), (0.2, 0.35), (0.35, 0.5), (0.5, np.inf))  # object's longer side / image's shorter side


def _recalled(boxes: np.ndarray, labels: np.ndarray, truth: np.ndarray, truth_labels: np.ndarray) -> np.ndarray:
    """Per object: does a box of its class overlap it by IoU ≥ 0.5?"""
    hit = np.zeros(len(truth), dtype=bool)
    for j in range(len(truth)):
        mine = boxes[labels == truth_labels[j]]
        hit[j] = len(mine) > 0 and iou(mine, truth[j : j + 1]).max() >= 0.5
    return hit


def _oracle(d: Detections, truth: np.ndarray, truth_labels: np.ndarray, poor_too: bool) -> Detections:
    """``d`` without its detections of another class over an object (and, with ``poor_too``,
    without its right-class boxes of IoU 0.1-0.5 with every object of their class)."""
    if not len(d.scores) or not len(truth):
        return d
    overlap = iou(d.boxes, truth)  # [D, K]
    best = overlap.argmax(axis=1)
    wrong = (overlap.max(axis=1) >= 0.1) & (truth_labels[best] != d.labels)
    keep = ~wrong
    if poor_too:
        own = np.where(truth_labels[None, :] == d.labels[:, None], overlap, 0.0).max(axis=1)
        keep &= ~((own >= 0.1) & (own < 0.5))
    return Detections(d.boxes[keep], d.scores[keep], d.labels[keep])


def best_detections(p: Predictor, images: int, seed: int, top: int, threshold: float) -> tuple[Counter, int, dict]:
    kinds = Counter()
    objects = 0
    decoded, truths, recall = [], [], []
    for i in range(images):
        s = generate(seed, "multi", "test", i)
        objects += len(s.boxes)
        boxes, scores, labels = p._detection_candidates(p.dense(s.image), threshold)
        merged = greedy_merge(boxes, scores, labels, p.merge_config)
        decoded.append(Detections(merged.boxes, merged.scores, merged.classes))
        truths.append((s.boxes, s.labels))
        size = (s.boxes[:, 2:] - s.boxes[:, :2]).max(axis=1) / min(s.image.shape[:2])
        recall += list(
            zip(
                size,
                _recalled(boxes, labels, s.boxes, s.labels),
                _recalled(merged.boxes, merged.classes, s.boxes, s.labels),
                strict=True,
            )
        )
        found: set[int] = set()
        for k in range(min(top, len(merged.boxes))):
            overlap = iou(merged.boxes[k : k + 1], s.boxes)[0] if len(s.boxes) else np.zeros(0)
            same = s.labels == merged.classes[k]
            best = int(np.argmax(np.where(same, overlap, -1.0))) if same.any() else -1
            if best >= 0 and overlap[best] >= 0.5:
                kinds[KINDS[1] if best in found else KINDS[0]] += 1
                found.add(best)
            elif best >= 0 and overlap[best] >= 0.1:
                kinds[KINDS[2]] += 1
            elif len(overlap) and overlap.max() >= 0.1:
                kinds[KINDS[3] if same.any() else KINDS[4]] += 1
            else:
                kinds[KINDS[5]] += 1
    classes = len(p.meta.classes)
    bounds = {
        "as decoded": average_precision(decoded, truths, classes),
        "without another class over an object": average_precision(
            [_oracle(d, *t, False) for d, t in zip(decoded, truths, strict=True)], truths, classes
        ),
        "also without right-class boxes of IoU 0.1-0.5": average_precision(
            [_oracle(d, *t, True) for d, t in zip(decoded, truths, strict=True)], truths, classes
        ),
    }
    return (
        kinds,
        objects,
        {
            "map": {k: float(np.nanmean(v)) for k, v in bounds.items()},
            "recall": np.asarray(recall, dtype=np.float64).reshape(-1, 3),
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="single-object and multi-object test images (each)")
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--top", type=int, default=10, help="best-ranked detections per image that are sorted")
    parser.add_argument("--score-threshold", type=float, default=0.1, help="detection candidates (as overfeat eval)")
    parser.add_argument("--model", help="an ONNX file (default: the committed checkpoint, exported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(Path(tmp) / "model.onnx")
        if not args.model:
            export_checkpoint(CHECKPOINT, model)
        with Predictor.from_path(model, pyramid="paper", flip=True) as p:
            rows, answer = raw_boxes(p, args.images, args.seed)
            kinds, objects, bounds = best_detections(p, args.images, args.seed, args.top, args.score_threshold)
    print(f"Raw localization boxes of the right class, {args.images} single-object images (seed {args.seed}), per scale:\n")
    print("| scale | boxes | IoU ≥ 0.5 | median IoU | object / window (median) |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scale'][0]}×{r['scale'][1]} | {r['boxes']} | {100 * r['iou_ge_half']:.1f}% | {r['median_iou']:.2f} | {r['object_in_window']:.2f} |"
        )
    print("\nImages with a right box (IoU ≥ 0.5, right class):\n")
    print(f"- among the candidates: {100 * answer['candidate']:.1f}%")
    print(f"- the best-scored merged box of the right class: {100 * answer['best merged']:.1f}%")
    print(f"- among the top 5 merged boxes (the localization rule): {100 * answer['top 5']:.1f}%")
    total = sum(kinds.values())
    print(
        f"\nThe {args.top} best-ranked merged detections of {args.images} multi-object images ({objects} objects, {total} detections):\n"
    )
    print("| detection | count | share |\n|---|---:|---:|")
    for kind in KINDS:
        print(f"| {kind} | {kinds[kind]} | {100 * kinds[kind] / max(total, 1):.1f}% |")
    print(f"\nmAP@0.5 of the {args.images} multi-object images, and with what an oracle of the true objects removes:\n")
    print("| detections | mAP@0.5 |\n|---|---:|")
    for name, value in bounds["map"].items():
        print(f"| {name} | {value:.3f} |")
    r = bounds["recall"]
    print(
        "\nRecall (objects with a box of their class at IoU ≥ 0.5), by the object's longer side against the image's shorter side:\n"
    )
    print("| object size | objects | among the candidates | after merging |\n|---|---:|---:|---:|")
    for lo, hi in (*SIZES, (0.0, np.inf)):
        sel = (r[:, 0] >= lo) & (r[:, 0] < hi)
        name = "all" if (lo, hi) == (0.0, np.inf) else f"{lo:.2f}–{hi:.2f}" if np.isfinite(hi) else f"≥ {lo:.2f}"
        if sel.any():
            print(f"| {name} | {int(sel.sum())} | {100 * r[sel, 1].mean():.1f}% | {100 * r[sel, 2].mean():.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
