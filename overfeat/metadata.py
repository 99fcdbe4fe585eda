"""The metadata contract between export and runtime.

An exported model carries everything the runtime needs to know about it in ONNX
``metadata_props``: string keys prefixed ``overfeat.``, each value JSON. Nothing else crosses
from export to runtime. :class:`ModelMeta` is the typed view; :meth:`ModelMeta.to_props` and
:meth:`ModelMeta.from_props` convert, and a missing or malformed key is a :class:`ModelError`
that names the key.

Keys (JSON values):

=============================  ===============================================================
``overfeat.format_version``    integer, currently 1
``overfeat.arch``              ``"fast"`` or ``"accurate"``
``overfeat.window``            training input size S (221 / 231): one output looks at S×S pixels
``overfeat.stride``            output stride in input pixels (12 / 16 fine, 36 / 32 coarse)
``overfeat.fine_stride``       whether the graph evaluates the k² pooling offsets
``overfeat.geometry``          sliding-window ops from input to output map (kernel, stride,
                               pad, dilation), so any consumer computes map sizes exactly
``overfeat.heads``             subset of ``["cls", "loc", "det"]``
``overfeat.classes``           class names, length C
``overfeat.mean``/``.std``     per-channel (R, G, B) normalisation of 0–255 pixels
``overfeat.pyramid``           the model's six input sizes ``[[H, W], ...]`` (landscape)
``overfeat.box_encoding``      ``{"name": "window-xyxy", "per_class": bool}`` (``loc`` only)
``overfeat.background_index``  index of the background score in ``det_scores`` (``det`` only)
``overfeat.precision``         ``"fp32"``, ``"fp16"`` or ``"int8"``
=============================  ===============================================================

Outputs: head ``cls`` → ``scores`` [N, C, h, w]; ``loc`` → ``boxes`` [N, 4·C or 4, h, w];
``det`` → ``det_scores`` [N, C+1, h, w]. Box channels are class-major: class c owns channels
4c..4c+3 = (x1, y1, x2, y2), each relative to its window origin and divided by the window S.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from overfeat.errors import InputError, ModelError
from overfeat.geometry import ARCHS, Size, SpatialOp, output_size

FORMAT_VERSION = 1
PREFIX = "overfeat."
INPUT_NAME = "image"
HEADS = ("cls", "loc", "det")
OUTPUT_NAMES = {"cls": "scores", "loc": "boxes", "det": "det_scores"}
PRECISIONS = ("fp32", "fp16", "int8")
BOX_ENCODING = "window-xyxy"
# Normalisation of the released OverFeat models: (pixel − mean) / std, the same for R, G, B.
RELEASED_MEAN = (118.380948,) * 3
RELEASED_STD = (61.896913,) * 3
# Bounds of what a model's metadata may say (it is read from files: untrusted).
MAX_SIDE = 16384  # an input side, in pixels
MAX_SCALES = 64
MAX_OPS = 64
MAX_CLASSES = 100_000
MAX_NAME = 256  # characters of a class name


@dataclass(frozen=True)
class ModelMeta:
    """Everything the runtime knows about a model."""

    arch: str
    window: int
    stride: int
    fine_stride: bool
    geometry: tuple[SpatialOp, ...]
    heads: tuple[str, ...]
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pyramid: tuple[Size, ...]
    box_per_class: bool | None = None  # None when the model has no ``loc`` head
    background_index: int | None = None  # None when the model has no ``det`` head
    precision: str = "fp32"
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)  # other overfeat.* keys, kept as-is

    def __post_init__(self) -> None:
        _check(self.arch in ARCHS, "arch", f"got {self.arch!r:.80}, expected one of {', '.join(sorted(ARCHS))}")
        _check(0 < self.window <= MAX_SIDE, "window", f"got {self.window}, expected 1 to {MAX_SIDE}")
        _check(0 < self.stride <= self.window, "stride", f"got {self.stride}, expected 1 to the window ({self.window})")
        _check(0 < len(self.geometry) <= MAX_OPS, "geometry", f"got {len(self.geometry)} ops, expected 1 to {MAX_OPS}")
        _check(
            math.prod(op.stride for op in self.geometry) == self.stride,
            "geometry",
            f"its strides multiply to {math.prod(op.stride for op in self.geometry)}, the metadata stride is {self.stride}",
        )
        _check(
            output_size(self.geometry, (self.window, self.window)) == (1, 1)
            and output_size(self.geometry, (self.window - 1, self.window - 1))[0] < 1,
            "geometry",
            f"the window {self.window} must be the smallest input with a 1x1 output map",
        )
        _check(0 < len(self.pyramid) <= MAX_SCALES, "pyramid", f"got {len(self.pyramid)} sizes, expected 1 to {MAX_SCALES}")
        for h, w in self.pyramid:
            _check(
                self.window <= min(h, w) and max(h, w) <= MAX_SIDE,
                "pyramid",
                f"size {h}x{w}: each side must be from the window ({self.window}) to {MAX_SIDE}",
            )
        _check(len(self.classes) <= MAX_CLASSES, "classes", f"got {len(self.classes)} names, at most {MAX_CLASSES}")
        _check(all(0 < len(c) <= MAX_NAME for c in self.classes), "classes", f"each name needs 1 to {MAX_NAME} characters")
        _check(
            len(self.heads) > 0 and set(self.heads) <= set(HEADS),
            "heads",
            f"got {list(self.heads)}, expected a non-empty subset of {list(HEADS)}",
        )
        _check(len(set(self.heads)) == len(self.heads), "heads", f"got {list(self.heads)}, heads must not repeat")
        _check(len(self.classes) > 0, "classes", "got no class names, expected at least one")
        _check(len(self.mean) == 3 and len(self.std) == 3, "mean", "mean and std need 3 values (R, G, B)")
        _check(all(math.isfinite(m) for m in self.mean), "mean", f"got {list(self.mean)}, expected finite values")
        _check(all(math.isfinite(s) and s > 0 for s in self.std), "std", f"got {list(self.std)}, expected finite positive values")
        _check(
            ("loc" in self.heads) == (self.box_per_class is not None),
            "box_encoding",
            "is required exactly when the model has a 'loc' head",
        )
        _check(
            ("det" in self.heads) == (self.background_index is not None),
            "background_index",
            "is required exactly when the model has a 'det' head",
        )
        if self.background_index is not None:
            _check(
                self.background_index == len(self.classes),
                "background_index",
                f"got {self.background_index}, expected {len(self.classes)} (the last det score)",
            )
        _check(self.precision in PRECISIONS, "precision", f"got {self.precision!r}, expected one of {list(PRECISIONS)}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(OUTPUT_NAMES[h] for h in HEADS if h in self.heads)

    def output_channels(self) -> dict[str, int]:
        """Channel count of each output tensor."""
        channels = {
            "cls": self.num_classes,
            "loc": 4 * self.num_classes if self.box_per_class else 4,
            "det": self.num_classes + 1,
        }
        return {OUTPUT_NAMES[h]: channels[h] for h in HEADS if h in self.heads}

    def map_size(self, size: Size) -> Size:
        """Dense output map (h, w) for an input of (height, width)."""
        return output_size(self.geometry, size)

    def to_props(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "format_version": self.format_version,
            "arch": self.arch,
            "window": self.window,
            "stride": self.stride,
            "fine_stride": self.fine_stride,
            "geometry": [op.to_dict() for op in self.geometry],
            "heads": list(self.heads),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "pyramid": [list(s) for s in self.pyramid],
            "precision": self.precision,
        }
        if self.box_per_class is not None:
            values["box_encoding"] = {"name": BOX_ENCODING, "per_class": self.box_per_class}
        if self.background_index is not None:
            values["background_index"] = self.background_index
        props = {PREFIX + key: json.dumps(value) for key, value in values.items()}
        props.update({k: json.dumps(v) for k, v in self.extra.items()})
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Parse ``metadata_props``; ``source`` (e.g. the file name) begins every error message."""
        try:
            return cls._from_props(props, source)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{source}: malformed overfeat metadata ({exc})") from None

    @classmethod
    def _from_props(cls, props: Mapping[str, str], source: str) -> ModelMeta:
        reader = _Reader(props)
        version = reader.get("format_version", int)
        if version != FORMAT_VERSION:
            raise ModelError(
                f"metadata 'overfeat.format_version' is {version}, this version of overfeat reads {FORMAT_VERSION}; re-export the model with this version"
            )
        heads = tuple(reader.get("heads", list))
        encoding = reader.get("box_encoding", dict) if "loc" in heads else None
        if encoding is not None and encoding.get("name") != BOX_ENCODING:
            raise ModelError(f"metadata 'overfeat.box_encoding' is {encoding!r:.200}, expected name {BOX_ENCODING!r}")
        try:
            geometry = tuple(SpatialOp(**op) for op in reader.get("geometry", list)[: MAX_OPS + 1])
        except InputError as exc:  # a value out of bounds
            raise ModelError(f"metadata 'overfeat.geometry': {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"metadata 'overfeat.geometry': {exc}; expected objects of kernel, stride, pad, dilation") from None
        try:
            pyramid = tuple((int(h), int(w)) for h, w in reader.get("pyramid", list)[: MAX_SCALES + 1])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"metadata 'overfeat.pyramid': {exc}, expected [[H, W], ...]") from None
        known = {PREFIX + k for k in _KNOWN}
        extra = {k: json.loads(v) for k, v in props.items() if k.startswith(PREFIX) and k not in known}
        return cls(
            arch=reader.get("arch", str),
            window=reader.get("window", int),
            stride=reader.get("stride", int),
            fine_stride=reader.get("fine_stride", bool),
            geometry=geometry,
            heads=heads,
            classes=tuple(str(c) for c in reader.get("classes", list)),
            mean=tuple(float(v) for v in reader.get("mean", list)),
            std=tuple(float(v) for v in reader.get("std", list)),
            pyramid=pyramid,
            box_per_class=None if encoding is None else bool(encoding.get("per_class")),
            background_index=reader.get("background_index", int) if "det" in heads else None,
            precision=reader.get("precision", str),
            extra=extra,
        )


_KNOWN = (
    "format_version",
    "arch",
    "window",
    "stride",
    "fine_stride",
    "geometry",
    "heads",
    "classes",
    "mean",
    "std",
    "pyramid",
    "box_encoding",
    "background_index",
    "precision",
)


class _Reader:
    def __init__(self, props: Mapping[str, str]) -> None:
        self.props = props

    def get(self, key: str, kind: type) -> Any:
        name = PREFIX + key
        if name not in self.props:
            raise ModelError(f"metadata key {name!r} is missing; is this an ONNX file written by 'overfeat export'?")
        try:
            value = json.loads(self.props[name])
        except json.JSONDecodeError:
            raise ModelError(f"metadata key {name!r} is not valid JSON: {self.props[name][:80]!r}") from None
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise ModelError(f"metadata key {name!r} is {type(value).__name__} {value!r:.80}, expected {kind.__name__}")
        return value


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ModelError(f"metadata {PREFIX + key!r}: {message}")


def read_class_names(path: str, expected: int | None = None) -> tuple[str, ...]:
    """Read class names, one per line (surrounding spaces and a final newline ignored).

    Raises :class:`~overfeat.errors.InputError` for a missing file, an empty or repeated name,
    or a count other than ``expected``.
    """
    from overfeat.errors import InputError

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"classes file {path} could not be read ({exc.__class__.__name__}): expected a UTF-8 text file, one name per line"
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for number, name in enumerate(names, 1):
        if not name:
            raise InputError(f"classes file {path}: line {number} is empty, expected one class name per line")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if name in seen:
            raise InputError(
                f"classes file {path}: {name!r} on line {number} repeats line {seen[name]}; class names must be distinct"
            )
        seen[name] = number
    if expected is not None and len(names) != expected:
        raise InputError(f"classes file {path} has {len(names)} names, expected {expected} (`num_classes`)")
    if not names:
        raise InputError(f"classes file {path} is empty, expected one class name per line")
    return tuple(names)
