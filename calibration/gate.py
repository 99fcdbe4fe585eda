"""Accuracy gates: a converted model against its fp32 source, on held-out images.

:func:`compare` runs both models through the runtime (the same pyramid, flips and decoding as
``overfeat infer``) on each image and measures, with :mod:`overfeat.runtime.compare` (as export's
parity check and ``overfeat validate`` do):

- **raw**: per output tensor, the largest and mean absolute difference over every scale, and
  the largest difference relative to the fp32 output's largest magnitude;
- **task agreement**: top-1 agreement and top-5 overlap of ``classify``; IoU of the two top
  boxes of ``localize`` (0 when their classes differ); for ``detect``, the share of the fp32
  model's boxes that the candidate reproduces (same class, IoU ≥ 0.5) and their mean IoU;
- **task metrics**, when the images are labelled: the ``overfeat eval`` figures of both.

:class:`GateConfig` holds the limits (defaults: top-1 agreement ≥ 99%, detection mAP within
1 point of fp32), :class:`CompareOptions` how both models run; ``Comparison.failures`` lists
each limit missed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from overfeat.datasets.images import ImageSet
from overfeat.errors import InputError
from overfeat.progress import Progress
from overfeat.runtime.compare import Agreement, OutputErrors

MIN_CHECK_IMAGES = 10


class ReferenceOutputs:
    """The reference model's dense maps and decoded results per check image, kept so that
    several candidates compared with one reference on the same images (``--auto-exclude`` tries
    one exclusion set after another) run the reference only once. An entry is found by the
    image's position and a digest of its pixels, so other images are never given its outputs.
    Images whose maps would take the memory past ``budget`` bytes are not kept; they are run
    again when needed."""

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget = budget
        self.used = 0
        self.hits = 0
        self._items: dict[tuple[int, bytes], tuple[list, dict]] = {}

    @staticmethod
    def _key(index: int, image: np.ndarray) -> tuple[int, bytes]:
        digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
        digest.update(repr((image.shape, image.dtype.str)).encode())
        return index, digest.digest()

    def get(self, index: int, image: np.ndarray):
        item = self._items.get(self._key(index, image))
        if item is not None:
            self.hits += 1
        return item

    def put(self, index: int, image: np.ndarray, maps: list, decoded: dict) -> None:
        size = sum(v.nbytes for m in maps for v in m.outputs.values())
        key = self._key(index, image)
        if key not in self._items and self.used + size <= self.budget:
            self._items[key] = (maps, decoded)
            self.used += size


@dataclass(frozen=True)
class GateConfig:
    min_top1_agreement: float = 0.99
    max_map_drop: float = 0.01  # in mAP units: 0.01 is one point

    def __post_init__(self) -> None:
        if not 0 <= self.min_top1_agreement <= 1:
            raise InputError(f"`min_top1_agreement` must be within 0..1, got {self.min_top1_agreement}")
        if not 0 <= self.max_map_drop <= 1:
            raise InputError(f"`max_map_drop` must be within 0..1 (0.01 = one mAP point), got {self.max_map_drop}")


@dataclass
class Comparison:
    reference: str
    candidate: str
    images: int
    tasks: tuple[str, ...]
    gate: GateConfig
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"fp32": {...}, "candidate": {...}}
    failures: list[str] = field(default_factory=list)
    backend: str = "onnxruntime"  # what ran the candidate
    precision: str = ""  # the arithmetic it ran in

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "backend": self.backend,
            "precision": self.precision,
            "images": self.images,
            "tasks": list(self.tasks),
            "gate": {"min_top1_agreement": self.gate.min_top1_agreement, "max_map_drop": self.gate.max_map_drop},
            "outputs": self.outputs,
            "agreement": self.agreement,
            "metrics": self.metrics,
            "passed": self.passed,
            "failures": self.failures,
        }

    def table(self) -> str:
        lines = [
            f"accuracy check: {self.candidate} ({self.backend}, {self.precision}) against {self.reference} (onnxruntime, fp32) "
            f"on {self.images} held-out images"
        ]
        for name, e in self.outputs.items():
            lines.append(
                f"  {name:<11} max |error| {e['max_abs']:.4g}  mean |error| {e['mean_abs']:.3g}  relative {e['relative']:.3%}"
            )
        labels = {
            "top1": "top-1 agreement",
            "top5_overlap": "top-5 overlap",
            "localize_iou": "localize top-box IoU",
            "detect_recall": "detect boxes kept (IoU ≥ 0.5)",
            "detect_iou": "detect mean IoU",
        }
        for key, value in self.agreement.items():
            lines.append(
                f"  {labels[key]:<30} {value:.2%}"
                if key in ("top1", "top5_overlap", "detect_recall")
                else f"  {labels[key]:<30} {value:.3f}"
            )
        if self.metrics:
            ref, cand = self.metrics["fp32"], self.metrics["candidate"]
            for key, label in (
                ("top1_error", "top-1 error"),
                ("top5_error", "top-5 error"),
                ("localization_error", "localization error"),
                ("mean_ap", "mAP@0.5"),
            ):
                if ref.get(key) is not None:
                    fmt = "{:.4f}" if key == "mean_ap" else "{:.2%}"
                    lines.append(f"  {label:<30} fp32 {fmt.format(ref[key])}  candidate {fmt.format(cand[key])}")
        lines.append("gate PASS" if self.passed else "gate FAIL: " + "; ".join(self.failures))
        return "\n".join(lines)


@dataclass(frozen=True)
class CompareOptions:
    """How :func:`compare` runs the two models and judges the candidate: the same pyramid,
    flips and decoding for both; the reference in ONNX Runtime, the candidate in
    ``candidate_backend``, in ``candidate_precision`` where that backend takes one (OpenVINO:
    ``"bf16"`` judges bf16 execution of an fp32 file)."""

    pyramid: Any = "paper"
    flip: bool = True
    gate: GateConfig = field(default_factory=GateConfig)
    score_threshold: float = 0.1  # detections decoded from this probability on
    candidate_backend: str = "onnxruntime"
    candidate_precision: str | None = None


def compare(
    reference: str,
    candidate: str,
    images: ImageSet,
    count: int,
    start: int = 0,
    options: CompareOptions | None = None,
    *,
    progress: Progress | None = None,
    reference_outputs: ReferenceOutputs | None = None,
    **changes: Any,
) -> Comparison:
    """Compare ``candidate`` with ``reference`` (both ONNX files) on up to ``count`` images of
    ``images`` from position ``start`` on, as ``options`` say (keywords change single fields of
    them: ``pyramid=2, flip=False``). Pass the same ``reference_outputs`` to calls that differ
    only in ``candidate`` to run the reference once."""
    from overfeat.runtime import Predictor
    from overfeat.runtime.tasks import default_tasks

    options = replace(options or CompareOptions(), **changes)
    progress = progress or Progress(enabled=False)
    with (
        Predictor.from_path(reference, "onnxruntime", pyramid=options.pyramid, flip=options.flip) as ref,
        Predictor.from_path(
            candidate,
            options.candidate_backend,
            precision=options.candidate_precision,
            pyramid=options.pyramid,
            flip=options.flip,
        ) as cand,
    ):
        if ref.meta.classes != cand.meta.classes or ref.meta.heads != cand.meta.heads:
            raise InputError(f"{candidate} and {reference} differ in classes or heads; compare a model with its own conversion")
        tally = _Tally(ref.meta, default_tasks(ref.meta), images, options.score_threshold)
        for index, (_name, image, truth) in enumerate(progress.track(images.take(count, start), "checking", total=count)):
            tally.add(ref, cand, index, image, truth, reference_outputs)
        execution = cand.execution_precision
    if tally.count < MIN_CHECK_IMAGES:
        raise InputError(
            f"the accuracy check read {tally.count} images, expected at least {MIN_CHECK_IMAGES}; "
            "give more held-out images (`CheckConfig.images`)"
        )
    out = Comparison(
        reference, candidate, tally.count, tally.tasks, options.gate, backend=options.candidate_backend, precision=execution
    )
    out.outputs = tally.errors.to_dict()
    out.agreement = tally.agreement.to_dict()
    out.metrics = tally.metrics(reference, candidate, images.spec, options)
    _judge(out)
    return out


class _Tally:
    """What :func:`compare` gathers image by image: raw output errors, task agreement and, when
    the images are labelled, both models' task metrics."""

    def __init__(self, meta, tasks: tuple[str, ...], images: ImageSet, score_threshold: float) -> None:
        from overfeat.runtime.evaluate import Scorer, class_map
        from overfeat.runtime.tasks import DecodeConfig

        self.meta, self.tasks, self.count = meta, tasks, 0
        self.decoding = DecodeConfig(score_threshold=score_threshold)
        self.errors, self.agreement = OutputErrors(), Agreement()
        self.to_model = class_map(meta, images.classes) if images.classes else None
        self.scorers = {"fp32": Scorer(meta, tasks), "candidate": Scorer(meta, tasks)} if self.to_model is not None else {}

    def add(self, ref, cand, index: int, image: np.ndarray, truth, kept: ReferenceOutputs | None) -> None:
        """Run one image through both predictors (the reference's from ``kept`` when there) and tally it."""
        self.count += 1
        maps_ref, r = self._reference(ref, index, image, kept)
        maps_cand = cand.dense(image)
        for a, b in zip(maps_ref, maps_cand, strict=True):
            self.errors.add(a.outputs, b.outputs)
        c = cand.decode(maps_cand, self.tasks, self.decoding, image_size=image.shape[:2])
        self.agreement.add(r, c)
        if self.scorers and truth is not None:
            labels = self.to_model[truth[1]]
            wanted = self.scorers["fp32"].wanted(labels)
            self.scorers["fp32"].add(truth[0], labels, {t: r[t] for t in wanted})
            self.scorers["candidate"].add(truth[0], labels, {t: c[t] for t in wanted})

    def _reference(self, ref, index: int, image: np.ndarray, kept: ReferenceOutputs | None) -> tuple[list, dict]:
        item = kept.get(index, image) if kept is not None else None
        if item is not None:
            return item
        maps = ref.dense(image)
        results = ref.decode(maps, self.tasks, self.decoding, image_size=image.shape[:2])
        if kept is not None:
            kept.put(index, image, maps, results)
        return maps, results

    def metrics(self, reference: str, candidate: str, spec: str, options: CompareOptions) -> dict[str, dict[str, Any]]:
        """The ``overfeat eval`` figures of both models; empty when the images have no labels."""
        from overfeat.runtime.evaluate import Evaluation

        out = {}
        method = "merge" if "detect" in self.tasks else None
        for key, scorer in self.scorers.items():
            model = reference if key == "fp32" else candidate
            ev = scorer.fill(
                Evaluation(
                    model,
                    spec,
                    self.count,
                    str(options.pyramid),
                    options.flip,
                    self.meta.fine_stride,
                    self.meta.classes,
                    method=method,
                )
            )
            out[key] = {k: getattr(ev, k) for k in ("top1_error", "top5_error", "localization_error", "mean_ap")}
        return out


def _judge(out: Comparison) -> None:
    gate = out.gate
    checked = False
    if "top1" in out.agreement:
        checked = True
        if out.agreement["top1"] < gate.min_top1_agreement:
            out.failures.append(f"top-1 agreement {out.agreement['top1']:.2%} < {gate.min_top1_agreement:.2%}")
    if out.metrics and out.metrics["fp32"].get("mean_ap") is not None:
        checked = True
        drop = out.metrics["fp32"]["mean_ap"] - out.metrics["candidate"]["mean_ap"]
        if drop > gate.max_map_drop:
            out.failures.append(
                f"mAP@0.5 dropped by {drop:.4f} (fp32 {out.metrics['fp32']['mean_ap']:.4f}), more than {gate.max_map_drop:.4f}"
            )
    if not checked:
        out.failures.append("no gate applies: the model has no cls head and the images have no detection labels")
