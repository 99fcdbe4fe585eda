"""Architecture tables and spatial geometry of OverFeat networks, in plain Python.

The layer tables are the paper's Table 1 (fast and accurate models). Everything here is pure
arithmetic shared by the PyTorch model builder, the metadata written into ONNX files, the
runtime and the engine planner, so that an output map size is computed in exactly one place.

Fine stride ("offset pooling"): the last k×k max-pool of the trunk is run with stride 1 and the
first classifier convolution with dilation k. That equals pooling at the k² offsets, running the
classifier on each pooled map and interleaving the results, and divides the output stride by k.
"""

from __future__ import annotations

from dataclasses import dataclass

from overfeat.errors import InputError

Size = tuple[int, int]
MAX_OP = 1024  # the largest kernel, stride, pad or dilation a spatial op may have


@dataclass(frozen=True)
class TrunkLayer:
    """One trunk convolution (always followed by ReLU), optionally followed by a max-pool."""

    kernel: int
    stride: int
    pad: int
    channels: int
    pool: int = 0  # k of a k×k / stride-k max-pool after the layer; 0 for none


@dataclass(frozen=True)
class ArchSpec:
    """A full OverFeat architecture: trunk, classifier and regressor widths, pyramid."""

    name: str
    window: int  # training input size: the smallest input that gives a 1×1 output
    trunk: tuple[TrunkLayer, ...]
    fc_kernel: int  # kernel of the first "fc" layer, applied to the last pooled map
    classifier: tuple[int, ...]  # hidden widths of the classifier ("fc" layers before the output)
    regressor: tuple[int, ...]  # hidden widths of the box regressor (paper Fig. 8)
    pyramid: tuple[Size, ...]  # six (height, width) input sizes, landscape orientation

    @property
    def offset_pool(self) -> int:
        """k of the trunk's last max-pool, the one evaluated at k² offsets in fine mode."""
        return self.trunk[-1].pool

    def stride(self, fine: bool = True) -> int:
        """Output stride in input pixels (accurate: 36 coarse, 12 fine; fast: 32 and 16)."""
        total = 1
        for layer in self.trunk:
            total *= layer.stride * (layer.pool or 1)
        return total // self.offset_pool if fine else total


@dataclass(frozen=True)
class SpatialOp:
    """A sliding-window operation on the path from input to output map."""

    kernel: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1

    def __post_init__(self) -> None:
        for name, low in (("kernel", 1), ("stride", 1), ("pad", 0), ("dilation", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_OP:
                raise InputError(f"spatial op {name} {value!r}: expected a whole number from {low} to {MAX_OP}")

    def out(self, n: int) -> int:
        return (n + 2 * self.pad - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def to_dict(self) -> dict[str, int]:
        return {"kernel": self.kernel, "stride": self.stride, "pad": self.pad, "dilation": self.dilation}


# Paper Table 1. The accurate pyramid is the paper's (Table 5 / DESIGN.md), height × width.
ACCURATE = ArchSpec(
    name="accurate",
    window=221,
    trunk=(
        TrunkLayer(7, 2, 0, 96, pool=3),
        TrunkLayer(7, 1, 0, 256, pool=2),
        TrunkLayer(3, 1, 1, 512),
        TrunkLayer(3, 1, 1, 512),
        TrunkLayer(3, 1, 1, 1024),
        TrunkLayer(3, 1, 1, 1024, pool=3),
    ),
    fc_kernel=5,
    classifier=(4096, 4096),
    regressor=(4096, 1024),
    pyramid=((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569)),
)


def derive_pyramid(reference: ArchSpec, window: int, stride: int) -> tuple[Size, ...]:
    """Carry the accurate model's pyramid over to another window and fine stride.

    Each side s of the reference pyramid keeps its ratio to the window (so objects span the
    same fraction of the window at every scale) and is snapped to the nearest size on the
    model's fine-stride grid, ``window + stride·m``, on which the dense map tiles the image
    exactly: ``window + stride · round((s · window / reference.window − window) / stride)``.
    """

    def snap(side: int) -> int:
        m = round((side * window / reference.window - window) / stride)
        return window + stride * m

    return tuple((snap(h), snap(w)) for h, w in reference.pyramid)


_FAST_TRUNK = (
    TrunkLayer(11, 4, 0, 96, pool=2),
    TrunkLayer(5, 1, 0, 256, pool=2),
    TrunkLayer(3, 1, 1, 512),
    TrunkLayer(3, 1, 1, 1024),
    TrunkLayer(3, 1, 1, 1024, pool=2),
)
FAST = ArchSpec(
    name="fast",
    window=231,
    trunk=_FAST_TRUNK,
    fc_kernel=6,
    classifier=(3072, 4096),
    regressor=(4096, 1024),
    # 263×263, 295×327, 327×407, 407×487, 439×519, 487×599 (dense maps 3×3 … 17×24)
    pyramid=derive_pyramid(ACCURATE, window=231, stride=16),
)

ARCHS: dict[str, ArchSpec] = {spec.name: spec for spec in (FAST, ACCURATE)}


def get_arch(name: str) -> ArchSpec:
    """The architecture called ``name``; an :class:`InputError` lists the known ones."""
    try:
        return ARCHS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ARCHS))
        raise InputError(f"unknown architecture {name!r}: expected one of {known}") from None


def spatial_ops(spec: ArchSpec, fine: bool = True) -> tuple[SpatialOp, ...]:
    """The sliding-window operations from the input to the dense output map.

    1×1 layers do not change the map size and are left out.
    """
    k = spec.offset_pool
    ops: list[SpatialOp] = []
    for i, layer in enumerate(spec.trunk):
        ops.append(SpatialOp(layer.kernel, layer.stride, layer.pad))
        if layer.pool:
            last = i == len(spec.trunk) - 1
            ops.append(SpatialOp(layer.pool, 1 if (last and fine) else layer.pool))
    ops.append(SpatialOp(spec.fc_kernel, dilation=k if fine else 1))
    return tuple(ops)


def output_size(ops: tuple[SpatialOp, ...] | list[SpatialOp], size: Size) -> Size:
    """Dense output map (height, width) for an input of ``size``; a side ≤ 0 means too small."""
    h, w = size
    for op in ops:
        h, w = op.out(h), op.out(w)
    return h, w


def min_input(ops: tuple[SpatialOp, ...] | list[SpatialOp]) -> int:
    """The smallest square input side whose output map is at least 1×1."""
    side = 1
    while output_size(ops, (side, side))[0] < 1:
        side += 1
    return side


def parse_size(text: str) -> Size:
    """Parse ``"HxW"`` (or ``"H×W"``, or a single ``"S"`` for a square) into (height, width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise InputError(f"bad size {text!r}: expected HEIGHTxWIDTH with positive integers, e.g. 300x333")
    return values[0], values[1]
