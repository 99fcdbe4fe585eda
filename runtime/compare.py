"""A candidate model against a reference: how far their outputs differ, how far their results agree.

Export's parity check (PyTorch against ONNX Runtime), the precision gate (a converted model
against fp32) and ``overfeat validate`` (candidates against a reference) all measure the same two
things with these:

- :class:`ErrorStats`: per output tensor, over any number of (reference, candidate) pairs, the
  largest and mean absolute difference and the largest difference relative to the reference's
  largest magnitude;
- :class:`Agreement`: from the decoded task results, top-1 agreement and top-5 overlap of
  ``classify``, IoU of the two top ``localize`` boxes (0 when their classes differ), and for
  ``detect`` the share of the reference's boxes the candidate reproduces (same class, IoU ≥ 0.5)
  and their mean IoU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

AGREEMENT_KEYS = ("top1", "top5_overlap", "localize_iou", "detect_recall", "detect_iou")
DETECT_IOU = 0.5  # a reference box is reproduced by a candidate box of its class this close
DETECT_BOXES = 20  # the reference's first (highest scoring) boxes that are looked for


class ErrorStats:
    """``|candidate − reference|`` of one output over every pair added, in float64.

    ``max_abs`` and ``scale`` (the largest ``|reference|``) are the maxima over the pairs, the
    first pair's values when there is one; ``mean_abs`` is over every element of every pair."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.count = 0
        self.scale = 0.0

    @classmethod
    def of(cls, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> ErrorStats:
        """The statistics of (reference, candidate) arrays, each pair of one shape."""
        stats = cls()
        for reference, candidate in pairs:
            stats.add(reference, candidate)
        return stats

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        """One more pair: arrays of the same shape, any float dtype."""
        x, y = np.asarray(reference).astype(np.float64), np.asarray(candidate).astype(np.float64)
        diff = np.abs(x - y)
        largest, scale = float(diff.max()), float(np.abs(x).max())
        first = self.count == 0
        self.max_abs = largest if first else max(self.max_abs, largest)
        self.scale = scale if first else max(self.scale, scale)
        self.sum_abs += float(diff.sum())
        self.count += diff.size

    @property
    def mean_abs(self) -> float:
        return self.sum_abs / self.count

    @property
    def relative(self) -> float:
        """``max_abs / scale``, the scale kept from zero (at least 1e-12)."""
        return self.max_abs / max(self.scale, 1e-12)

    def to_dict(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "relative": self.relative}


class OutputErrors:
    """:class:`ErrorStats` per output name, fed one (reference, candidate) output dict at a time;
    the names are the reference's (in its order) unless given."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        self.names = tuple(names) if names is not None else None
        self.stats: dict[str, ErrorStats] = {}

    def add(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        for name in self.names if self.names is not None else reference:
            self.stats.setdefault(name, ErrorStats()).add(reference[name], candidate[name])

    def __getitem__(self, name: str) -> ErrorStats:
        return self.stats[name]

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{output: {"max_abs", "mean_abs", "relative"}}``."""
        return {name: stats.to_dict() for name, stats in self.stats.items()}


class Agreement:
    """How a candidate's decoded task results agree with the reference's, image after image."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {k: [] for k in AGREEMENT_KEYS}

    def add(self, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> None:
        """One image's results of both models (``{task: Result}``, as ``Predictor.decode`` gives)."""
        if "classify" in reference:
            self._classify(reference["classify"], candidate["classify"])
        if "localize" in reference:
            self._localize(reference["localize"].boxes, candidate["localize"].boxes)
        if "detect" in reference:
            self._detect(reference["detect"].boxes, candidate["detect"].boxes)

    def _classify(self, reference, candidate) -> None:
        a, b = [x.label for x in reference.classes], [x.label for x in candidate.classes]
        self.values["top1"].append(float(a[:1] == b[:1]))
        self.values["top5_overlap"].append(len(set(a) & set(b)) / max(1, len(a)))

    def _localize(self, a, b) -> None:
        from .boxes import iou

        if a:
            same = b and a[0].label == b[0].label
            self.values["localize_iou"].append(float(iou(np.asarray([a[0].box]), np.asarray([b[0].box]))[0, 0]) if same else 0.0)

    def _detect(self, reference, candidate) -> None:
        from .boxes import iou

        for box in reference[:DETECT_BOXES]:
            mine = [x.box for x in candidate if x.label == box.label]
            best = float(iou(np.asarray([box.box]), np.asarray(mine)).max()) if mine else 0.0
            self.values["detect_recall"].append(float(best >= DETECT_IOU))
            self.values["detect_iou"].append(best)

    def to_dict(self) -> dict[str, float]:
        """The mean of each measure that had something to measure."""
        return {k: float(np.mean(v)) for k, v in self.values.items() if v}
