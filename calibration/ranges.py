"""Activation ranges: collected once by ONNX Runtime's calibrators, kept in a JSON cache.

:func:`collect_ranges` runs the fp32 model on the calibration feeds through onnxruntime's
calibrator of the chosen method (MinMax, Entropy or Percentile, symmetric ranges as TensorRT
uses them), one feed at a time so that scales of different sizes mix and memory stays bounded.

The cache (:func:`save_ranges`, :func:`load_ranges`) records the ONNX file's sha256, the method
and the calibration data it came from. A cache is reused only for the same model, method and
data; any other cache is refused with the reason, never used silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from overfeat.errors import InputError, ModelError
from overfeat.fileio import private_link, write_json
from overfeat.progress import Progress

METHODS = ("entropy", "minmax", "percentile")
CACHE_FORMAT = 1
DEFAULT_PERCENTILE = 99.99


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


def load_ranges(path: str | os.PathLike[str], model_sha256: str, method: Method, data: dict[str, Any]) -> Ranges | None:
    """The cached ranges at ``path`` (None when there is no cache); refuses a cache made for
    another model, method or calibration data."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        cached = Ranges(
            raw["model_sha256"],
            Method(raw["method"], raw["percentile"]),
            dict(raw["data"]),
            {k: (float(lo), float(hi)) for k, (lo, hi) in raw["ranges"].items()},
            [tuple(s) for s in raw["skipped"]],
            int(raw["end"]),
            int(raw["count"]),
            int(raw["feeds"]),
            from_cache=True,
        )
        version = raw["format"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as exc:
        raise InputError(
            f"calibration cache {path} is unreadable or malformed ({type(exc).__name__}: {str(exc)[:80]}); delete it to calibrate again"
        ) from None
    if version != CACHE_FORMAT:
        raise ModelError(
            f"calibration cache {path} has format {version}, this version reads {CACHE_FORMAT}; delete it to calibrate again"
        )
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
    return cached


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
    with tempfile.TemporaryDirectory(prefix="overfeat-calibrate-") as tmp:
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
    return {name: (_scalar(td.range_value[0]), _scalar(td.range_value[1])) for name, td in data.items()}


def _scalar(value) -> float:
    """A per-tensor range bound (the calibrators give 0-d or one-element arrays)."""
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
