"""Which layers INT8 hurts most: quantize one layer at a time.

For each Conv layer, the model is quantized with only that layer in int8 (its weights and its
input; every other layer in float), and its outputs are compared with fp32 on calibration feeds.
The layer with the largest error is the most sensitive. The error of one run is the mean over
feeds and outputs of ‖int8 − fp32‖₂ / ‖fp32‖₂.

Measuring each layer alone, rather than dropping one layer at a time from the fully quantized
model, gives each layer's own share of the error. Dropping one measures a small difference
between two large totals; on the narrow shapes model, where every layer adds a similar amount
of error, that ranking put the three layers with the largest error of their own last.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overfeat.fileio import work_dir
from overfeat.progress import Progress
from overfeat.runtime.backends.onnxruntime import session as _session

from .int8 import conv_nodes, quantize_int8
from .ranges import Ranges


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    error: float  # the error with only this layer in int8


def output_error(session_a, session_b, feeds: Sequence[dict[str, np.ndarray]]) -> float:
    """Mean relative L2 error of ``session_b``'s outputs against ``session_a``'s."""
    errors = []
    for feed in feeds:
        for x, y in zip(session_a.run(None, feed), session_b.run(None, feed), strict=True):
            x, y = x.astype(np.float64), y.astype(np.float64)
            errors.append(float(np.linalg.norm(y - x) / max(np.linalg.norm(x), 1e-12)))
    return float(np.mean(errors))


def rank_layers(
    source: str | os.PathLike[str],
    ranges: Ranges,
    feeds: Sequence[dict[str, np.ndarray]],
    excluded: Sequence[str] = (),
    progress: Progress | None = None,
) -> list[LayerSensitivity]:
    """The layers not in ``excluded``, most sensitive (largest error alone) first."""
    import onnx

    progress = progress or Progress(enabled=False)
    reference = _session(source)
    layers = [n for n in conv_nodes(onnx.load(str(source), load_external_data=False)) if n not in excluded]
    with work_dir("sensitivity") as tmp:

        def error(exclude: Sequence[str]) -> float:
            path = Path(tmp) / "candidate.onnx"
            quantize_int8(source, ranges, path, exclude)
            return output_error(reference, _session(path), feeds)

        ranked = [
            LayerSensitivity(node, error([*excluded, *(n for n in layers if n != node)]))
            for node in progress.track(layers, "sensitivity")
        ]
    ranked.sort(key=lambda s: (-s.error, layers.index(s.node)))
    return ranked


def time_model(path: str | os.PathLike[str], feed: dict[str, np.ndarray], repeat: int = 5) -> float:
    """Median seconds of one run of ``feed`` (after a warm-up run)."""
    session = _session(path)
    session.run(None, feed)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
