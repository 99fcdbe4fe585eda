"""Accuracy of a model on a COCO-style dataset: the paper's three tasks, in NumPy.

- **Classification** (images whose objects share one class, the image's label): top-1 and
  top-5 error of :meth:`Predictor.classify`.
- **Localization** (the same images; ILSVRC rule, as the paper): an image is correct when one
  of the top-5 boxes of :meth:`Predictor.localize` has the image's class and IoU ≥ 0.5 with one
  of its ground-truth boxes.
- **Detection** (every image): per-class average precision at IoU ≥ 0.5, VOC style (in order of decreasing
  score, a detection is a hit when the ground-truth box of its class it overlaps most has
  IoU ≥ 0.5 and no better-ranked detection took it, else a false positive; AP is the area under the precision envelope of the PR curve), and
  their mean over the classes that have ground truth.

All tasks of an image come from one pass of the pyramid (:meth:`Predictor.predict`).

A run that fails part-way (an image unreadable by the time it is reached, a backend error)
stops at that image and raises :class:`EvaluationIncomplete`, which holds the figures of the
images before it, marked ``complete=False`` with the image and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from overfeat.errors import InputError, OverfeatError
from overfeat.progress import Progress

from .boxes import iou
from .predictor import Predictor
from .results import Result
from .tasks import EVAL_DECODE, DecodeConfig, check_tasks

if TYPE_CHECKING:
    from overfeat.datasets.coco import Dataset

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Detections:
    """The detections of one image: boxes [D, 4], scores [D], labels [D]."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_result(cls, result: Result) -> Detections:
        boxes = np.asarray([b.box for b in result.boxes], dtype=np.float64).reshape(-1, 4)
        return cls(
            boxes,
            np.asarray([b.score for b in result.boxes], dtype=np.float64),
            np.asarray([b.label for b in result.boxes], dtype=np.int64),
        )


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ "all points"): recall and precision in rank order."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope: best precision at any recall ≥ r
    changes = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def average_precision(
    detections: Sequence[Detections],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = IOU_THRESHOLD,
) -> np.ndarray:
    """VOC AP per class (NaN for a class without ground truth).

    ``detections[i]`` and ``truths[i]`` = (boxes [G, 4], labels [G]) belong to image i. Equal
    scores rank by image, then by position in the image's list. Matching is greedy per image,
    which equals the global greedy order: a detection's match depends only on the better-ranked
    detections of the same image and class.
    """
    if len(detections) != len(truths):
        raise InputError(f"{len(detections)} detection lists for {len(truths)} images")
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        n_truth = sum(int(np.count_nonzero(labels == c)) for _, labels in truths)
        if n_truth == 0:
            continue
        keys, hits = [], []
        for i, (det, (gt_boxes, gt_labels)) in enumerate(zip(detections, truths, strict=True)):
            mine = np.flatnonzero(det.labels == c)
            if not len(mine):
                continue
            order = mine[np.lexsort((mine, -det.scores[mine]))]
            matched = np.zeros(len(order), dtype=bool)
            gt = gt_boxes[gt_labels == c]
            if len(gt):
                overlaps = iou(det.boxes[order], gt)
                taken = np.zeros(len(gt), dtype=bool)
                for d in range(len(order)):
                    # VOC: the best-overlapping box, matched or not; a hit only if it is still free
                    best = int(np.argmax(overlaps[d]))
                    if overlaps[d, best] >= iou_threshold and not taken[best]:
                        taken[best] = matched[d] = True
            keys.append(np.stack([-det.scores[order], np.full(len(order), i), order.astype(np.float64)], axis=1))
            hits.append(matched)
        if not keys:
            ap[c] = 0.0
            continue
        key = np.concatenate(keys)
        hit = np.concatenate(hits)[np.lexsort((key[:, 2], key[:, 1], key[:, 0]))]
        tp = np.cumsum(hit)
        precision = tp / np.arange(1, len(hit) + 1)
        ap[c] = interpolated_ap(tp / n_truth, precision)
    return ap


@dataclass
class Evaluation:
    """Figures of one evaluation run (errors and AP as fractions in 0..1)."""

    model: str
    data: str
    images: int
    pyramid: str
    flip: bool
    fine_stride: bool
    classes: tuple[str, ...]
    method: str | None = None  # how detections were decoded (None: no detection)
    merge_threshold: float | None = None  # the greedy merge's, where localization or detection merged
    merge_kernel: str | None = None  # the greedy merge's kernel ("compiled" or "numpy"), where it merged
    backend: str | None = None  # the backend that ran the network
    precision: str | None = None  # the arithmetic it ran in (OpenVINO: fp32, bf16 or int8; else the file's)
    iou_threshold: float | None = None  # the suppression's, where detection ran by nms or vote
    labelled_images: int = 0  # images with one class, used for classification and localization
    top1_error: float | None = None
    top5_error: float | None = None
    localization_error: float | None = None
    mean_ap: float | None = None
    ap: dict[str, float | None] = field(default_factory=dict)
    seconds_per_image: float = 0.0
    complete: bool = True  # False: the run stopped at ``failed_image``; the figures cover the images before it
    failed_image: str | None = None
    failure: str | None = None  # why ``failed_image`` failed

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()} | {"classes": list(self.classes)}

    def table(self) -> str:
        def pct(v):
            return "-" if v is None else f"{100 * v:6.2f}%"

        lines = [
            f"{self.images} images ({self.labelled_images} with one class), pyramid {self.pyramid}, "
            f"{'flips' if self.flip else 'no flips'}, {'fine' if self.fine_stride else 'coarse'} stride"
            + (f", detections by {self.method}" if self.mean_ap is not None else "")
            + (f" (IoU {self.iou_threshold:g})" if self.mean_ap is not None and self.iou_threshold is not None else ""),
            f"  classification  top-1 error   {pct(self.top1_error)}",
            f"                  top-5 error   {pct(self.top5_error)}",
            f"  localization    error         {pct(self.localization_error)}",
            f"  detection       mAP@0.5       {'-' if self.mean_ap is None else f'{self.mean_ap:7.4f}'}",
        ]
        if self.ap:
            lines.append(
                "  per-class AP: " + ", ".join(f"{name} {'-' if v is None else f'{v:.3f}'}" for name, v in self.ap.items())
            )
        if not self.complete:
            lines.append(f"  INCOMPLETE: stopped at {self.failed_image} ({self.failure}); the figures cover the images before it")
        return "\n".join(lines)


class EvaluationIncomplete(OverfeatError):
    """An evaluation stopped part-way: ``partial`` holds the figures of the images before the
    one that failed (``complete`` False, ``failed_image`` and ``failure`` set). Its exit code is
    the failure's (2 for an unreadable image)."""

    def __init__(self, partial: Evaluation, planned: int, cause: BaseException) -> None:
        super().__init__(
            f"evaluation stopped at image {partial.images + 1} of {planned}, {partial.failed_image}: {partial.failure}; "
            f"the figures of the {partial.images} images before it are marked incomplete"
        )
        self.partial = partial
        self.exit_code = getattr(cause, "exit_code", 1)


def _pyramid_name(spec) -> str:
    return spec if isinstance(spec, str) else str(spec) if isinstance(spec, int) else ",".join(f"{h}x{w}" for h, w in spec)


class Scorer:
    """Accumulates per-image results into an :class:`Evaluation`.

    ``add`` takes an image's ground truth (boxes [K, 4], labels [K] as model class indices) and
    the results :meth:`Predictor.predict` (or :meth:`Predictor.decode`) gave for it.
    """

    def __init__(self, meta, tasks: Sequence[str]) -> None:
        self.meta, self.tasks = meta, tuple(tasks)
        self.top1 = self.top5 = self.located = self.labelled = self.images = 0
        self.detections: list[Detections] = []
        self.truths: list[tuple[np.ndarray, np.ndarray]] = []

    def wanted(self, labels: np.ndarray) -> tuple[str, ...]:
        """The tasks an image with these labels is scored on (classify and localize need one class)."""
        return tuple(t for t in self.tasks if t == "detect" or _single(labels))

    def add(self, boxes: np.ndarray, labels: np.ndarray, results: dict[str, Result]) -> None:
        self.images += 1
        if _single(labels):
            self.labelled += 1
            truth = int(labels[0])
            if "classify" in results:
                ranked = [c.label for c in results["classify"].classes]
                self.top1 += ranked[:1] == [truth]
                self.top5 += truth in ranked[:5]
            if "localize" in results:
                self.located += any(
                    b.label == truth and iou(np.asarray(b.box), boxes).max() >= IOU_THRESHOLD
                    for b in results["localize"].boxes[:5]
                )
        if "detect" in results:
            self.detections.append(Detections.from_result(results["detect"]))
            self.truths.append((boxes, labels))

    def fill(self, out: Evaluation) -> Evaluation:
        """Set ``out``'s figures from what was added."""
        out.labelled_images = self.labelled
        if self.labelled and "classify" in self.tasks:
            out.top1_error, out.top5_error = 1 - self.top1 / self.labelled, 1 - self.top5 / self.labelled
        if self.labelled and "localize" in self.tasks:
            out.localization_error = 1 - self.located / self.labelled
        if "detect" in self.tasks:
            ap = average_precision(self.detections, self.truths, self.meta.num_classes)
            out.ap = {name: (None if np.isnan(v) else round(float(v), 4)) for name, v in zip(self.meta.classes, ap, strict=True)}
            present = ap[~np.isnan(ap)]
            out.mean_ap = float(present.mean()) if len(present) else None
        return out


def _single(labels: np.ndarray) -> bool:
    return len(labels) > 0 and bool(np.all(labels == labels[0]))


def class_map(meta, dataset_classes: Sequence[str]) -> np.ndarray:
    """Index of each dataset class among the model's classes; refuses classes the model lacks."""
    model_index = {name: i for i, name in enumerate(meta.classes)}
    missing = [name for name in dataset_classes if name not in model_index]
    if missing:
        raise InputError(
            f"dataset classes {missing[:5]} are not among the model's classes {list(meta.classes)[:12]}; evaluate with a dataset of the model's classes"
        )
    return np.asarray([model_index[name] for name in dataset_classes], dtype=np.int64)


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    tasks: Sequence[str] | None = None,
    config: DecodeConfig = EVAL_DECODE,
    *,
    progress: Progress | None = None,
    source: str = "",
) -> Evaluation:
    """Run ``tasks`` (default: all the model's heads allow) on every image of ``dataset``,
    decoded as ``config`` says (default :data:`EVAL_DECODE`: candidates from probability 0.1,
    so that the PR curve reaches further; top-5 always, for the top-5 error); the predictor's
    merge configuration merges localization's boxes and, by ``"merge"``, detections."""
    meta = predictor.meta
    config = replace(config, top_k=5)
    method, iou_threshold = config.method, config.iou_threshold
    to_model = class_map(meta, dataset.classes)
    tasks = check_tasks(tasks, meta, predictor.backend.source)
    if not dataset.records:
        raise InputError("the dataset has no images")
    scorer = Scorer(meta, tasks)
    done, seconds, failed = _run(predictor, dataset, to_model, scorer, config, progress or Progress(enabled=False))
    detect = "detect" in tasks
    merged = "localize" in tasks or (detect and method == "merge")
    out = Evaluation(
        source or predictor.backend.source,
        "",
        done,
        _pyramid_name(predictor.pyramid),
        predictor.flip,
        meta.fine_stride,
        meta.classes,
        method=method if detect else None,
        merge_threshold=predictor.merge_config.threshold if merged else None,
        merge_kernel=predictor.merge_kernel if merged else None,
        backend=predictor.backend_name,
        precision=predictor.execution_precision,
        iou_threshold=iou_threshold if detect and method != "merge" else None,
    )
    scorer.fill(out)
    out.seconds_per_image = seconds / max(1, done)
    if failed:
        record, cause = failed
        out.complete, out.failed_image, out.failure = False, str(record.path), " ".join(str(cause).split())
        raise EvaluationIncomplete(out, len(dataset.records), cause) from cause
    return out


def _run(predictor, dataset, to_model, scorer, config, progress) -> tuple[int, float, tuple | None]:
    """Score the dataset's images in order until one fails: (images done, seconds of work,
    (record, exception) of the image that failed, or None)."""
    seconds = 0.0
    for done, record in enumerate(progress.track(dataset.records, "evaluating")):
        labels = to_model[record.labels]
        wanted = scorer.wanted(labels)
        if not wanted:
            continue
        try:
            results = predictor.predict(record.path, wanted, config)
        except (OverfeatError, OSError) as exc:
            return done, seconds, (record, exc)
        seconds += sum(results[wanted[0]].timings.get(k, 0.0) for k in ("preprocess", "inference"))
        seconds += sum(r.timings.get("decode", 0.0) + r.timings.get("merge", 0.0) for r in results.values())
        scorer.add(record.boxes, labels, results)
    return len(dataset.records), seconds, None
