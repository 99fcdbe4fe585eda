"""What ``overfeat build`` will build, decided without TensorRT.

:func:`plan_build` reads the ONNX file's inputs and metadata and turns the build options into a
:class:`BuildPlan`: one :class:`EngineSpec` per engine, each with its file name, the
min/opt/max input shapes of its optimization profile and the output shapes the metadata
predicts. Everything here is plain Python, tested on the CPU; the TensorRT builder
(:mod:`overfeat.engines.compiler`) only executes the plan. ``overfeat build --dry-run`` prints
:meth:`BuildPlan.describe`.

Static plans (the default) are one per pyramid size, batch fixed (2 = the image and its
mirror); the paper pyramid is built in both orientations, because the runtime transposes each
size for portrait images. ``--dynamic MIN:OPT:MAX`` builds one plan whose profile spans the
given sizes and batch 1..N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overfeat.errors import InputError, ModelError
from overfeat.geometry import Size, parse_size
from overfeat.limits import format_bytes, parse_bytes  # noqa: F401 - part of this module's API
from overfeat.metadata import INPUT_NAME, ModelMeta
from overfeat.runtime.manifest import (  # the manifest's bounds: a plan decided here is one the runtime reads
    HARDWARE_LEVELS,
    MAX_DIM,
    MAX_OPT_LEVEL,
    MAX_PLANS,
    MAX_WORKSPACE,
    ORIENTATIONS,
)


@dataclass(frozen=True)
class DynamicRange:
    """A profile's spatial sizes: every H and W between ``min`` and ``max``, tuned for ``opt``."""

    min: Size
    opt: Size
    max: Size

    @classmethod
    def parse(cls, text: str) -> DynamicRange:
        parts = str(text).split(":")
        if len(parts) != 3:
            raise InputError(f"`dynamic` {text!r}: expected MIN:OPT:MAX, each HxW, such as 245x245:317x389:461x569")
        lo, opt, hi = (parse_size(p) for p in parts)
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise InputError(f"`dynamic` {text!r}: expected MIN ≤ OPT ≤ MAX in both height and width")
        return cls(lo, opt, hi)

    def covers(self, size: Size) -> bool:
        return all(a <= s <= b for a, s, b in zip(self.min, size, self.max, strict=True))

    def __str__(self) -> str:
        return ":".join(f"{h}x{w}" for h, w in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class BuildOptions:
    pyramid: Any = "paper"  # 'paper', 'aspect' (dynamic only), a number of scales, or a list of (H, W)
    batch: int = 2
    dynamic: DynamicRange | None = None
    orientations: str = "both"
    workspace: int | None = None  # bytes; None leaves TensorRT's default (the device's memory)
    timing_cache: str | None = None
    opt_level: int | None = None  # None leaves TensorRT's default (3)
    hardware_compatibility: str = "none"
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or not 1 <= self.batch <= MAX_DIM:
            raise InputError(
                f"`batch` {self.batch!r}: expected a positive integer up to {MAX_DIM} (2 = the image and its mirror)"
            )
        if self.orientations not in ORIENTATIONS:
            raise InputError(f"`orientations` {self.orientations!r}: expected one of {', '.join(ORIENTATIONS)}")
        if self.opt_level is not None and not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise InputError(
                f"`opt_level` {self.opt_level}: expected 0 to {MAX_OPT_LEVEL} (TensorRT's builder optimization level; default 3)"
            )
        if self.hardware_compatibility not in HARDWARE_LEVELS:
            raise InputError(
                f"`hardware_compatibility` {self.hardware_compatibility!r}: expected one of {', '.join(HARDWARE_LEVELS)}"
            )
        if self.workspace is not None and not 1 <= self.workspace <= MAX_WORKSPACE:
            raise InputError(f"`workspace` {self.workspace}: expected a positive number of bytes, at most 1 PiB")
        if self.pyramid == "aspect" and self.dynamic is None:
            raise InputError(
                "`pyramid` aspect gives every image its own sizes, which static plans cannot serve; add `dynamic` MIN:OPT:MAX"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as recorded in the manifest (``build``)."""
        return {
            "pyramid": self.pyramid if isinstance(self.pyramid, (str, int)) else [list(s) for s in self.pyramid],
            "batch": self.batch,
            "dynamic": str(self.dynamic) if self.dynamic else None,
            "orientations": self.orientations,
            "workspace": self.workspace,
            "opt_level": self.opt_level,
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible,
        }


@dataclass(frozen=True)
class EngineSpec:
    """One plan to build: its file name and optimization profile, and the outputs it will have."""

    file: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    outputs: dict[str, tuple[int | str, ...]] = field(default_factory=dict)

    @property
    def static(self) -> bool:
        return self.min_shape == self.max_shape

    @property
    def label(self) -> str:
        if self.static:
            return f"{self.min_shape[2]}x{self.min_shape[3]}"
        return f"{self.min_shape[2]}x{self.min_shape[3]}..{self.max_shape[2]}x{self.max_shape[3]}"


@dataclass(frozen=True)
class BuildPlan:
    onnx: str
    meta: ModelMeta
    options: BuildOptions
    engines: tuple[EngineSpec, ...]
    input_name: str = INPUT_NAME

    @property
    def precision(self) -> str:
        return self.meta.precision

    def describe(self, output: str | os.PathLike[str] | None = None) -> str:
        """The plan as ``overfeat build --dry-run`` prints it."""
        o = self.options
        lines = [
            f"model      {self.onnx}  ({self.meta.arch}, {', '.join(self.meta.heads)}, precision {self.precision} from the ONNX file)",
            f"engines    {len(self.engines)} {'static plans, one per size' if o.dynamic is None else 'plan with a dynamic profile'}"
            + (f", into {output}" if output is not None else ""),
            f"options    batch {o.batch}  workspace {format_bytes(o.workspace) if o.workspace else 'TensorRT default'}"
            f"  opt-level {o.opt_level if o.opt_level is not None else 'default (3)'}  hardware-compat {o.hardware_compatibility}"
            f"  version-compatible {'yes' if o.version_compatible else 'no'}",
            f"{'file':<34} {'input min':<18} {'input opt':<18} {'input max':<18} outputs",
        ]
        for e in self.engines:
            outs = ", ".join(f"{k} {_shape(v)}" for k, v in e.outputs.items())
            lines.append(f"{e.file:<34} {_shape(e.min_shape):<18} {_shape(e.opt_shape):<18} {_shape(e.max_shape):<18} {outs}")
        return "\n".join(lines)


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def _sizes(options: BuildOptions, meta: ModelMeta) -> list[Size]:
    """The pyramid sizes the engines must serve (both orientations unless told otherwise)."""
    from overfeat.runtime.pyramid import pyramid_sizes

    if options.pyramid == "aspect":
        return []
    given = not isinstance(options.pyramid, (str, int))
    landscape = pyramid_sizes(options.pyramid, meta, (meta.window, meta.window + 1))
    sizes = list(landscape)
    if not given and options.orientations == "both":
        sizes += [(w, h) for h, w in landscape]
    return list(dict.fromkeys(sizes))


def _outputs(meta: ModelMeta, lo: tuple[int, ...], hi: tuple[int, ...]) -> dict[str, tuple[int | str, ...]]:
    """Output shapes for inputs from ``lo`` to ``hi``: ints where fixed, ``"a..b"`` where not."""
    h0, w0 = meta.map_size((lo[2], lo[3]))
    h1, w1 = meta.map_size((hi[2], hi[3]))
    out = {}
    for name, channels in meta.output_channels().items():
        dims = [(lo[0], hi[0]), (channels, channels), (h0, h1), (w0, w1)]
        out[name] = tuple(a if a == b else f"{a}..{b}" for a, b in dims)
    return out


def _check_input(path: str, inputs, options: BuildOptions, sizes: list[Size]) -> str:
    """The ONNX file's image input accepts the shapes the plan asks for."""
    match = [t for t in inputs if t.name == INPUT_NAME]
    if not match:
        raise ModelError(
            f"model {path} has no input named {INPUT_NAME!r} (inputs: {[t.name for t in inputs]}); export it with 'overfeat export'"
        )
    shape = match[0].shape
    if len(shape) != 4:
        raise ModelError(f"model {path}: input {INPUT_NAME!r} has shape {list(shape)}, expected [N, 3, H, W]")
    batch, _, h, w = shape
    batches = range(1, options.batch + 1) if options.dynamic else [options.batch]
    if isinstance(batch, int) and batch > 0 and any(b != batch for b in batches):
        raise InputError(
            f"model {path} has a fixed batch of {batch}, the engines need batch {options.batch}"
            f"{' (1 to it with `dynamic`)' if options.dynamic else ''}; pass `batch` {batch} or export with a dynamic batch ('overfeat export --batch dynamic')"
        )
    fixed = [(i, d) for i, d in ((2, h), (3, w)) if isinstance(d, int) and d > 0]
    for axis, value in fixed:
        wanted = {s[axis - 2] for s in sizes}
        if options.dynamic:
            wanted |= {options.dynamic.min[axis - 2], options.dynamic.max[axis - 2]}
        if wanted != {value}:
            raise InputError(
                f"model {path} has a fixed {'height' if axis == 2 else 'width'} of {value}, the engines need {sorted(wanted)}; export with dynamic spatial axes (the default)"
            )
    return INPUT_NAME


def plan_build(onnx: str | os.PathLike[str], options: BuildOptions) -> BuildPlan:
    """Decide every engine of a build from the ONNX file and the options (needs ``onnx``)."""
    from overfeat.calibration.inspect import inspect_onnx

    info = inspect_onnx(onnx)
    meta = info.meta
    sizes = _sizes(options, meta)
    input_name = _check_input(str(onnx), info.inputs, options, sizes)
    small = [s for s in ([options.dynamic.min] if options.dynamic else sizes) if min(s) < meta.window]
    if small:
        raise InputError(
            f"size {small[0][0]}x{small[0][1]} is below the model's {meta.window}-pixel window; every side must be at least {meta.window}"
        )
    b = options.batch
    if options.dynamic:
        d = options.dynamic
        outside = [s for s in sizes if not d.covers(s)]
        if outside:
            listed = ", ".join(f"{h}x{w}" for h, w in outside)
            raise InputError(
                f"`dynamic` {d} does not cover pyramid sizes {listed}; widen MIN:OPT:MAX"
                + (" or pass `orientations` landscape" if options.orientations == "both" else "")
            )
        lo, opt, hi = (1, 3, *d.min), (b, 3, *d.opt), (b, 3, *d.max)
        name = f"dynamic_{d.min[0]}x{d.min[1]}-{d.max[0]}x{d.max[1]}_b1-{b}.plan"
        engines = (EngineSpec(name, lo, opt, hi, _outputs(meta, lo, hi)),)
    else:
        engines = tuple(
            EngineSpec(
                f"scale_{h}x{w}_b{b}.plan", (b, 3, h, w), (b, 3, h, w), (b, 3, h, w), _outputs(meta, (b, 3, h, w), (b, 3, h, w))
            )
            for h, w in sizes
        )
    _check_bounds(engines, options)
    return BuildPlan(str(Path(onnx)), meta, options, engines, input_name)


def _check_bounds(engines: tuple[EngineSpec, ...], options: BuildOptions) -> None:
    """Refuse, before any build, a plan the manifest could not record (too many plans, a side too large)."""
    if len(engines) > MAX_PLANS:
        raise InputError(f"`pyramid` gives {len(engines)} plans; a build holds at most {MAX_PLANS}")
    large = [e for e in engines if max(e.max_shape[2:]) > MAX_DIM]
    if large:
        what = "`dynamic`" if options.dynamic else "`pyramid`"
        raise InputError(f"{what} asks for the size {large[0].label}; each side must be at most {MAX_DIM}")
