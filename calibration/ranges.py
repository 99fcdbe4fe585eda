"""Activation ranges: collected once by ONNX Runtime's calibrators, kept in a JSON cache.

:func:`collect_ranges` runs the fp32 model on the calibration feeds through onnxruntime's
calibrator of the chosen method (MinMax, Entropy or Percentile, symmetric ranges as TensorRT
uses them), one feed at a time so that scales of different sizes mix and memory stays bounded.

The cache (:func:`save_ranges`, :func:`load_ranges`) records the ONNX file's sha256, the method
and the calibration data it came from. A cache is reused only for the same model, method and
data; any other cache is refused with the reason, never used silently. A cache is untrusted
input: it is read only up to ``MAX_CACHE_BYTES``, every field is checked for its type, and its
ranges must cover exactly the tensors the model's calibration gives a range to
(:func:`calibrated_tensors`), each range finite, within ±``MAX_RANGE`` and with low < high
(:func:`range_problem`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from overfeat.errors import InputError, ModelError
from overfeat.fileio import private_link, work_dir, write_json
from overfeat.progress import Progress

METHODS = ("entropy", "minmax", "percentile")
CACHE_FORMAT = 1
DEFAULT_PERCENTILE = 99.99
MAX_CACHE_BYTES = 16 * 1024**2  # a cache holds one range per tensor: a few KiB
MAX_RANGE = 1e30  # the largest |bound| of a range: beyond it a cache is damaged, not calibrated
_DAMAGED = "delete it, or pass `cache=None` to calibrate without a cache"


@dataclass(frozen=True)
class Method:
    """A calibration method; ``percentile`` applies to ``percentile`` only."""

    name: str
    percentile: float | None = None

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise InputError(f"calibration method {self.name!r}: expected one of {', '.join(METHODS)}")
        if self.name == "percentile":
            value = DEFAULT_PERCENTILE if self.percentile is None else self.percentile
            if not 50 < value <= 100:
                raise InputError(f"`percentile` {value}: expected a value above 50 and at most 100 (e.g. 99.99)")
            object.__setattr__(self, "percentile", float(value))
        elif self.percentile is not None:
            raise InputError(f"`percentile` applies to the percentile method, not to {self.name}")

    @property
    def label(self) -> str:
        return f"percentile-{self.percentile:g}" if self.name == "percentile" else self.name


@dataclass
class Ranges:
    """The symmetric activation range of each tensor, and where it came from."""

    model_sha256: str
    method: Method
    data: dict[str, Any]  # images, fingerprint, count, pyramid, flip, seed
    ranges: dict[str, tuple[float, float]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable images: (name, reason)
    end: int = 0  # position in the image set's order after the last image read
    data_count: int = 0  # images read
    feeds: int = 0  # batches run (images × scales)
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "model_sha256": self.model_sha256,
            "method": self.method.name,
            "percentile": self.method.percentile,
            "data": self.data,
            "skipped": [list(s) for s in self.skipped],
            "end": self.end,
            "count": self.data_count,
            "feeds": self.feeds,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
        }

    def tensors_data(self):
        """The ranges as onnxruntime's ``TensorsData`` for its quantizer."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[self.method.name]
        return TensorsData(
            method,
            {
                k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
                for k, (lo, hi) in self.ranges.items()
            },
        )


def save_ranges(path: str | os.PathLike[str], ranges: Ranges) -> Path:
    return write_json(path, ranges.to_dict())


def load_ranges(
    path: str | os.PathLike[str], model_sha256: str, method: Method, data: dict[str, Any], model: str | os.PathLike[str]
) -> Ranges | None:
    """The cached ranges at ``path`` (None when there is no cache); refuses a cache made for
    another model, method or calibration data, and one that is damaged: too large, malformed, or
    whose ranges are not finite, ordered ranges of exactly the tensors ``model`` calibrates."""
    path = Path(path)
    if not path.exists():
        return None
    raw = _read_cache(path)
    if raw.get("format") != CACHE_FORMAT or isinstance(raw.get("format"), bool):
        raise ModelError(
            f"calibration cache {path} has format {raw.get('format')!r:.40}, this version reads {CACHE_FORMAT}; delete it to calibrate again"
        )
    cached = _cached(path, raw)
    if cached.model_sha256 != model_sha256:
        raise ModelError(
            f"calibration cache {path} is stale: it holds ranges of the model with sha256 {cached.model_sha256[:12]}…, "
            f"not of this model ({model_sha256[:12]}…); delete it or give another `cache` to calibrate this model"
        )
    if cached.method != method:
        raise ModelError(
            f"calibration cache {path} holds {cached.method.label} ranges, this run asks for {method.label}; give another `cache` (or delete it)"
        )
    changed = [k for k in data if cached.data.get(k) != data[k]]
    if changed:
        what = ", ".join(f"{k} {cached.data.get(k)!r} → {data[k]!r}" for k in changed)
        raise ModelError(
            f"calibration cache {path} was made from other calibration data ({what}); delete it to calibrate with these images, or give another `cache`"
        )
    problem = range_problem(cached.ranges, calibrated_tensors(model))
    if problem:
        raise InputError(f"`cache` {path}: {problem}; {_DAMAGED}")
    cached.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in cached.ranges.items()}
    return cached


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's JSON object, read only when it is a regular file of at most MAX_CACHE_BYTES."""
    if not path.is_file():
        raise InputError(f"`cache` {path} is not a regular file; {_DAMAGED}")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CACHE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"`cache` {path} cannot be read ({exc.strerror}); {_DAMAGED}") from None
    if len(text) > MAX_CACHE_BYTES:
        raise InputError(f"`cache` {path} is larger than {MAX_CACHE_BYTES // 1024**2} MiB, not a range cache; {_DAMAGED}")
    try:
        raw = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"`cache` {path} is malformed, not JSON ({type(exc).__name__}: {str(exc)[:80]}); {_DAMAGED}") from None
    if not isinstance(raw, dict):
        raise InputError(f"`cache` {path} is malformed: expected a JSON object, got {type(raw).__name__}; {_DAMAGED}")
    return raw


_FIELDS = {  # field → (the types it may have, what it is)
    "model_sha256": ((str,), "text"),
    "method": ((str,), "text"),
    "percentile": ((int, float, type(None)), "a number or null"),
    "data": ((dict,), "an object"),
    "ranges": ((dict,), "an object"),
    "skipped": ((list,), "a list"),
    "end": ((int,), "an integer"),
    "count": ((int,), "an integer"),
    "feeds": ((int,), "an integer"),
}


def _cached(path: Path, raw: dict[str, Any]) -> Ranges:
    """The Ranges of a cache's JSON, each field of its type (the ranges' values are checked by range_problem)."""
    for key, (types, what) in _FIELDS.items():
        value = raw.get(key)
        if key not in raw or isinstance(value, bool) or not isinstance(value, types):
            got = "nothing" if key not in raw else type(value).__name__
            raise InputError(f"`cache` {path} is malformed: its {key} is {got}, expected {what}; {_DAMAGED}")
    if raw["method"] not in METHODS:
        raise InputError(
            f"`cache` {path} is malformed: method {raw['method']!r:.40}, expected one of {', '.join(METHODS)}; {_DAMAGED}"
        )
    if min(raw["end"], raw["count"], raw["feeds"]) < 0:
        raise InputError(f"`cache` {path} is malformed: a negative count of images or feeds; {_DAMAGED}")
    skipped = raw["skipped"]
    if not all(isinstance(s, list) and len(s) == 2 and all(isinstance(t, str) for t in s) for s in skipped):
        raise InputError(f"`cache` {path} is malformed: skipped holds other than [name, reason] pairs; {_DAMAGED}")
    try:
        method = Method(raw["method"], raw["percentile"])
    except InputError as exc:
        raise InputError(f"`cache` {path} is malformed: {exc}; {_DAMAGED}") from None
    return Ranges(
        raw["model_sha256"],
        method,
        dict(raw["data"]),
        dict(raw["ranges"]),  # as read: range_problem checks them before use
        [tuple(s) for s in skipped],
        raw["end"],
        raw["count"],
        raw["feeds"],
        from_cache=True,
    )


def range_problem(ranges: Mapping[str, Any], tensors: Collection[str] | None = None) -> str | None:
    """What is wrong with ``ranges`` (tensor name → [low, high]), or None: each range two
    finite numbers within ±MAX_RANGE with low < high; with ``tensors``, exactly those names."""
    if tensors is not None:
        unknown = sorted(set(ranges) - set(tensors))
        missing = sorted(set(tensors) - set(ranges))
        if unknown:
            return f"it holds ranges of {len(unknown)} tensors the model does not have ({_names(unknown)})"
        if missing:
            return f"it lacks the ranges of {len(missing)} tensors of the model ({_names(missing)})"
    for name, value in ranges.items():
        bounds = list(value) if isinstance(value, (list, tuple)) else []
        numbers = len(bounds) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if not numbers:
            return f"tensor {name!r:.60} has the range {value!r:.60}, expected [low, high], two numbers"
        shown = f"tensor {name!r:.60} has the range [{_bound(bounds[0])}, {_bound(bounds[1])}]"
        if not all(abs(b) <= MAX_RANGE and math.isfinite(b) for b in bounds):  # NaN compares False
            return f"{shown}, expected finite bounds within ±{MAX_RANGE:g}"
        if not bounds[0] < bounds[1]:
            return f"{shown}, expected low < high"
    return None


def _bound(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:24] + "…"


def _names(names: list[str]) -> str:
    return ", ".join(f"{n!r:.40}" for n in names[:3]) + (", ..." if len(names) > 3 else "")


def calibrated_tensors(model: str | os.PathLike[str]) -> set[str]:
    """The tensors onnxruntime's calibrators give a range to, as they choose them: every float or
    float16 input and output of a node, not an initializer, typed by ONNX shape inference."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    with work_dir("calibrate") as tmp:  # shape inference writes beside its input
        graph = load_model_with_shape_infer(private_link(model, tmp)).graph
    typed = {v.name: v.type for v in (*graph.value_info, *graph.output, *graph.input)}
    weights = {i.name for i in graph.initializer}
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    return {
        name
        for node in graph.node
        for name in (*node.input, *node.output)
        if name in typed
        and name not in weights
        and typed[name].HasField("tensor_type")
        and typed[name].tensor_type.elem_type in floats
    }


def collect_ranges(
    model_path: str | os.PathLike[str],
    feeds_per_image,
    method: Method,
    progress: Progress | None = None,
    providers: list[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Run the calibrator of ``method`` over ``feeds_per_image`` (an iterable of lists of feed
    dicts, one list per image) and return each tensor's (low, high) range."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    progress = progress or Progress(enabled=False)
    options: dict[str, Any] = {"symmetric": True}
    if method.name == "percentile":
        options["percentile"] = method.percentile
    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[
        method.name
    ]
    with work_dir("calibrate") as tmp:
        calibrator = create_calibrator(
            private_link(model_path, tmp),
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),  # it writes beside its input
            calibrate_method=kind,
            providers=providers,
            extra_options=options,
        )
        fed = 0
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            for feeds in feeds_per_image:
                for feed in feeds:  # one at a time: scales differ in size
                    calibrator.collect_data(_Reader([feed]))
                    fed += 1
            if not fed:
                raise InputError("no calibration images could be read")
            with progress.step(f"computing {method.label} ranges of the activations"):
                data = calibrator.compute_data()
    return {name: _widened(_scalar(td.range_value[0]), _scalar(td.range_value[1])) for name, td in data.items()}


def _widened(low: float, high: float) -> tuple[float, float]:
    """A range as calibrated, except that a tensor calibration never saw change (a dead channel
    of zeros, say: low == high) gets [v − 1, v + 1], so that every range, cached or not, has
    low < high; quantized, such a tensor still holds v exactly."""
    return (low - 1.0, high + 1.0) if low == high and math.isfinite(low) else (low, high)


def _scalar(value) -> float:
    """A per-tensor range bound (the calibrators give 0-d or one-element arrays)."""
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
