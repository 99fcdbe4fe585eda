"""Multi-scale classification, localization and detection above any backend, in NumPy.

``Predictor.from_path("model.onnx")`` (ONNX Runtime) or ``Predictor.from_path("engines/
manifest.json")`` (TensorRT). Each call runs the pyramid (each scale as one batch of the image
and its mirror), then:

- ``classify``: per class, the spatial maximum of each scale's score map, the mean over scales
  and flips, then a softmax.
- ``localize``: per scale, the top-k classes by their best per-location probability (softmax
  over classes at each location); for each, the regressor box at every location where that
  probability reaches ``min_score`` (default 0.2), with the probability as its confidence;
  greedy merge (:mod:`overfeat.runtime.merge`). The floor drops undecided locations, whose
  boxes carry little weight and cost merge time.
- ``detect``: per location, a softmax over the C classes and background; every location and
  class with probability ≥ ``score_threshold`` gives a candidate box; per class, greedy merge
  (``method="merge"``: accumulated scores, as the paper), NMS (``"nms"``) or NMS in which the
  suppressed boxes vote (``"vote"``: score-weighted mean box, summed score; see
  ``docs/accuracy.md``).

Resizing, merging and NMS run as compiled kernels where numba is installed, else in NumPy, with
the same results (``MergeConfig.kernel``, :mod:`overfeat.runtime.kernels`).

A Predictor keeps no per-call state: it may be called from several threads at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from overfeat.errors import BackendError, InputError, ModelError
from overfeat.metadata import INPUT_NAME, ModelMeta

from .backends import Backend, create_backend
from .boxes import decode_at, suppress, vote
from .image import DEFAULT_MAX_PIXELS, as_rgb, load_image
from .kernels import resolve_kernel
from .merge import MergeConfig, greedy_merge
from .pyramid import PyramidSpec, Scale, pyramid_batches, pyramid_sizes
from .pyramid import check_memory as check_pyramid_memory
from .results import BoxResult, ClassScore, Result
from .tasks import DecodeConfig, check_tasks

ImageInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class ScaleMaps:
    """The dense outputs of one scale: each [B, C, h, w], B = 2 with the mirror, else 1."""

    scale: Scale
    outputs: dict[str, np.ndarray]


class Predictor:
    def __init__(
        self,
        backend: Backend,
        *,
        pyramid: PyramidSpec = "paper",
        flip: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        merge: MergeConfig | None = None,
    ) -> None:
        self.backend, self.flip, self.max_pixels = backend, bool(flip), max_pixels
        self.closed = False
        self.merge_config = merge or MergeConfig()
        if self.merge_config.kernel == "compiled":
            resolve_kernel("compiled")  # compiled kernels asked for and missing: an error here, not at the first image
        self.pyramid = pyramid
        sizes = pyramid_sizes(pyramid, self.meta, (self.meta.window, self.meta.window + 1))  # validate now
        if pyramid != "aspect":  # the same sizes for every image: their memory is known now
            check_pyramid_memory(sizes, self.meta, self.flip)

    @classmethod
    def from_url(cls, url: str, model: str = "overfeat_net", *, protocol: str | None = None, **kwargs) -> Predictor:
        """The network model ``model`` of a Triton server at ``url`` (``HOST:PORT``, ``http://`` or
        ``grpc://``); the pyramid, the decoding and the merge run here
        (:mod:`overfeat.runtime.backends.triton`)."""
        return cls(create_backend(url, "triton", model=model, protocol=protocol), **kwargs)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike,
        backend: str | None = None,
        *,
        providers=None,
        precision: str | None = None,
        allow_host_code: bool = False,
        **kwargs,
    ) -> Predictor:
        """Open an ONNX file (ONNX Runtime, or OpenVINO with ``backend="openvino"``), an engine
        manifest (TensorRT) or a checkpoint from ``overfeat train`` (PyTorch). ``providers``:
        ONNX Runtime's execution providers; ``precision``: OpenVINO's execution precision
        (``"fp32"``, the default, or ``"bf16"``); ``allow_host_code``: TensorRT may load
        version-compatible engines, which run the TensorRT code they embed (refused unless True)."""
        host_code = allow_host_code or None  # only a backend that takes the option is given it
        return cls(create_backend(path, backend, providers=providers, precision=precision, allow_host_code=host_code), **kwargs)

    @property
    def backend_name(self) -> str:
        """The backend's name in the registry (``onnxruntime``, ``openvino``, ``tensorrt``, ``torch``)."""
        return getattr(self.backend, "name", type(self.backend).__name__)

    @property
    def execution_precision(self) -> str:
        """The arithmetic the network runs in: the backend's (OpenVINO: fp32, bf16 or int8),
        else the file's precision."""
        return getattr(self.backend, "execution_precision", self.meta.precision)

    @property
    def meta(self) -> ModelMeta:
        return self.backend.meta

    @property
    def merge_kernel(self) -> str:
        """The greedy merge's kernel here: ``"compiled"`` or ``"numpy"`` (see :class:`MergeConfig`)."""
        return resolve_kernel(self.merge_config.kernel)

    def close(self) -> None:
        """Release the backend; the predictor refuses further images (closing twice is harmless)."""
        if not self.closed:
            self.closed = True
            self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- inputs and dense maps

    def load(self, image: ImageInput) -> tuple[np.ndarray, str | None]:
        """An image path or array → (RGB array [H, W, 3], source name or None)."""
        if isinstance(image, (str, os.PathLike)):
            return load_image(image, self.max_pixels), str(image)
        return as_rgb(image, self.max_pixels), None

    def dense(self, image: np.ndarray, timings: dict[str, float] | None = None) -> list[ScaleMaps]:
        """Run every pyramid scale on an RGB array; the dense maps per scale."""
        if self.closed:
            raise InputError(f"this Predictor of {self.backend.source} is closed; open the model again (Predictor.from_path)")
        timings = timings if timings is not None else {}
        maps = []
        batches = pyramid_batches(image, self.pyramid, self.meta, self.flip, self.merge_config.kernel)
        while True:
            with _timed(timings, "preprocess"):
                scale, batch = next(batches, (None, None))
            if scale is None:
                break
            with _timed(timings, "inference"):
                outputs = self.backend.run({INPUT_NAME: batch})
            h, w = self.meta.map_size(scale.size)
            for name, channels in self.meta.output_channels().items():
                value = outputs[name]
                if value.shape != (len(batch), channels, h, w):
                    raise ModelError(
                        f"model {self.backend.source}: output {name!r} is {list(value.shape)} at {scale.size}, the metadata gives {[len(batch), channels, h, w]}"
                    )
                if not np.isfinite(value).all():
                    raise BackendError(
                        f"model {self.backend.source}: output {name!r} has NaN or inf at {scale.size[0]}x{scale.size[1]}; the model or its precision conversion is broken"
                    )
            maps.append(ScaleMaps(scale, outputs))
        return maps

    # ---------------------------------------------------------------- tasks

    def classify(self, image: ImageInput, top_k: int = 5) -> Result:
        return self.predict(image, ("classify",), DecodeConfig(top_k=top_k))["classify"]

    def localize(self, image: ImageInput, top_k: int = 5, max_boxes: int | None = None, min_score: float = 0.2) -> Result:
        """Ranked merged boxes (at most ``max_boxes``, default ``top_k``) with their classes.

        A location whose probability for a class is below ``min_score`` gives no box for it.
        """
        return self.predict(image, ("localize",), DecodeConfig(top_k=top_k, max_boxes=max_boxes, min_score=min_score))["localize"]

    def detect(
        self, image: ImageInput, score_threshold: float = 0.5, method: str = "merge", iou_threshold: float = 0.5
    ) -> Result:
        """Boxes of every class whose per-location probability reaches ``score_threshold``."""
        config = DecodeConfig(score_threshold=score_threshold, method=method, iou_threshold=iou_threshold)
        return self.predict(image, ("detect",), config)["detect"]

    def predict(
        self, image: ImageInput, tasks: tuple[str, ...] = ("classify",), config: DecodeConfig | None = None
    ) -> dict[str, Result]:
        """Several tasks from one pass of the pyramid: ``{task: Result}``, decoded as ``config``
        says (default :class:`DecodeConfig`); each result's timings hold the shared
        preprocessing and inference plus its own decoding."""
        config = config or DecodeConfig()
        tasks = check_tasks(tasks, self.meta, self.backend.source)
        array, source = self.load(image)
        shared: dict[str, float] = {}
        maps = self.dense(array, shared)
        return self.decode(maps, tasks, config, image_size=array.shape[:2], source=source, timings=shared)

    def decode(
        self,
        maps: list[ScaleMaps],
        tasks: tuple[str, ...],
        config: DecodeConfig | None = None,
        *,
        image_size: tuple[int, int],
        source: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Result]:
        """The task results from dense maps already computed by :meth:`dense`."""
        config = config or DecodeConfig()
        top_k, max_boxes, min_score = config.top_k, config.boxes_kept, config.min_score
        score_threshold, method, iou_threshold = config.score_threshold, config.method, config.iou_threshold
        shared = timings or {}
        results = {}
        for task in tasks:
            timings = dict(shared)
            classes, found = (), ()
            if task == "classify":
                with _timed(timings, "decode"):
                    classes = self._classification(maps, top_k)
            elif task == "localize":
                with _timed(timings, "decode"):
                    classes = self._classification(maps, top_k)
                    boxes, scores, labels = self._localization_candidates(maps, top_k, min_score)
                with _timed(timings, "merge"):
                    merged = greedy_merge(boxes, scores, labels, self.merge_config)
                found = self._boxes(merged.boxes, merged.scores, merged.classes, merged.counts)[:max_boxes]
            else:
                with _timed(timings, "decode"):
                    boxes, scores, labels = self._detection_candidates(maps, score_threshold)
                with _timed(timings, "merge"):
                    found = self._merge_detections(boxes, scores, labels, method, iou_threshold)
            results[task] = Result(
                task, source, tuple(image_size), tuple(m.scale.size for m in maps), self.flip, classes, found, timings
            )
        return results

    def _merge_detections(self, boxes, scores, labels, method: str, iou_threshold: float) -> tuple[BoxResult, ...]:
        if method == "merge":
            merged = greedy_merge(boxes, scores, labels, self.merge_config)
            return self._boxes(merged.boxes, merged.scores, merged.classes, merged.counts)
        founder = suppress(boxes, scores, labels, iou_threshold, self.merge_config.kernel)
        if method == "vote":  # all clusters by score (descending), then class, then the order they were founded
            heads, voted, totals, counts = vote(boxes, scores, founder)
            order = np.lexsort((np.arange(len(heads)), labels[heads], -totals))
            return self._boxes(voted[order], totals[order], labels[heads][order], counts[order])
        keep = np.flatnonzero(founder == np.arange(len(founder)))
        keep = keep[np.lexsort((keep, -scores[keep]))]
        return self._boxes(boxes[keep], scores[keep], labels[keep], np.ones(len(keep), int))

    # ---------------------------------------------------------------- decoding

    def _classification(self, maps: list[ScaleMaps], top_k: int) -> tuple[ClassScore, ...]:
        per_view = [m.outputs["scores"].max(axis=(2, 3)) for m in maps]  # each [B, C]
        mean = np.concatenate(per_view).astype(np.float64).mean(axis=0)
        probs = _softmax(mean, axis=0)
        order = np.lexsort((np.arange(len(probs)), -probs))[:top_k]
        return tuple(ClassScore(int(c), self.meta.classes[c], float(probs[c])) for c in order)

    def _localization_candidates(self, maps: list[ScaleMaps], top_k: int, min_score: float):
        """Per scale, the top-k classes by their best probability; for each, in that order, the
        image's then the mirror's locations (row-major) whose probability reaches min_score."""
        boxes, scores, labels = [], [], []
        for m in maps:
            probs = _softmax(m.outputs["scores"].astype(np.float64), axis=1)  # [B, C, h, w]
            best = probs.max(axis=(0, 2, 3))
            top = np.lexsort((np.arange(len(best)), -best))[:top_k]
            chosen = probs[:, top].transpose(1, 0, 2, 3)  # [k, B, h, w]: class rank, then image and mirror
            rank, batch, row, column = np.nonzero(chosen >= min_score)
            boxes.append(decode_at(m.outputs["boxes"], batch, top[rank], row, column, self.meta, m.scale))
            scores.append(chosen[rank, batch, row, column])
            labels.append(top[rank])
        return _stack(boxes, scores, labels)

    def _detection_candidates(self, maps: list[ScaleMaps], threshold: float):
        """Per scale, the image's then the mirror's classes in order, each class's locations
        (row-major) whose probability reaches the threshold; never the background."""
        boxes, scores, labels = [], [], []
        for m in maps:
            probs = _softmax(m.outputs["det_scores"].astype(np.float64), axis=1)[:, : self.meta.background_index]  # [B, C, h, w]
            batch, label, row, column = np.nonzero(probs >= threshold)
            boxes.append(decode_at(m.outputs["boxes"], batch, label, row, column, self.meta, m.scale))
            scores.append(probs[batch, label, row, column])
            labels.append(label)
        return _stack(boxes, scores, labels)

    def _boxes(self, boxes, scores, labels, counts) -> tuple[BoxResult, ...]:
        names = self.meta.classes
        return tuple(
            BoxResult(int(c), names[int(c)], float(s), tuple(float(v) for v in box), int(n))
            for box, s, c, n in zip(boxes, scores, labels, counts, strict=True)
        )

    def check_task(self, task: str) -> None:
        """Raise a ModelError if the model lacks the heads ``task`` needs."""
        check_tasks((task,), self.meta, self.backend.source)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _stack(boxes, scores, labels):
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels).astype(np.int64)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
