"""One memory limit, and estimates of what a request would allocate, checked before it allocates.

A size a user or a file sets (an input size, a pyramid scale, a training crop, a class count, a
width, an image's pixels) is turned into an estimate of the bytes it needs; one that exceeds the
limit is refused with an :class:`InputError` that gives the estimate and how to raise the limit.

The limit is, in order: :func:`set_max_memory` (the CLI's ``--max-memory``), the environment
variable ``OVERFEAT_MAX_MEMORY``, or half of this machine's memory. Sizes are written as bytes
or with a unit (:func:`parse_bytes`): ``8GB`` or ``8G`` (10⁹), ``8GiB`` (2³⁰), ``512MiB``.

The estimates are upper bounds of the peak, not measurements: an activation is counted with the
paper's full channel widths times the model's width (a runtime that does not know the width
counts full width), a convolution with its input, output and an im2col buffer.
"""

from __future__ import annotations

import os
import re

from overfeat.errors import InputError
from overfeat.geometry import get_arch

ENV = "OVERFEAT_MAX_MEMORY"
DEFAULT_SHARE = 0.5  # of the machine's memory
FLOAT = 4  # bytes of a float32
_limit: int | None = None


_UNITS = {  # decimal and binary units, case-insensitive
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_bytes(text: str) -> int:
    """``"4GiB"`` → 4294967296; units B, KB/KiB, MB/MiB, GB/GiB, TB/TiB (case-insensitive)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InputError(f"size {text!r}: expected a number with an optional unit, such as 4GiB, 512MiB or 1GB")
    value = float(match.group(1)) * _UNITS[unit]
    if not 1 <= value < 1 << 60:
        raise InputError(f"size {text!r}: expected more than 0 bytes and less than 1 EiB")
    value = int(value)
    return value


def format_bytes(value: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value} B"


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def set_max_memory(value: int | str | None) -> None:
    """Set the limit for this process (None: back to the environment or the default)."""
    global _limit
    _limit = None if value is None else (value if isinstance(value, int) else parse_bytes(value))


def max_memory() -> tuple[int, str]:
    """The limit in bytes, and where it comes from (for messages)."""
    if _limit is not None:
        return _limit, "`max_memory`"
    if os.environ.get(ENV):
        try:
            return parse_bytes(os.environ[ENV]), ENV
        except InputError as exc:
            raise InputError(f"the environment variable {ENV}: {exc}") from None
    total = machine_memory()
    return int(total * DEFAULT_SHARE), f"half of this machine's {gib(total)}"


def check_memory(need: float, what: str) -> None:
    """Refuse ``what`` when it needs more than the limit."""
    limit, source = max_memory()
    if need > limit:
        raise InputError(
            f"{what} needs about {gib(need)} of memory, over the limit of {gib(limit)} ({source}): ask for less, "
            f"or raise the limit with `max_memory` or the environment variable {ENV}"
        )


def _convs(arch: str, width: float, fine: bool) -> list[tuple[int, int, int, int, int, int]]:
    """(kernel, stride, pad, dilation, in channels, out channels) of the layers that hold large
    maps: the trunk convolutions and their pools (kernel k, channels unchanged), then the first
    classifier convolution."""
    spec = get_arch(arch)
    layers, cin = [], 3
    k = spec.offset_pool
    for i, layer in enumerate(spec.trunk):
        cout = max(1, round(layer.channels * width))
        layers.append((layer.kernel, layer.stride, layer.pad, 1, cin, cout))
        if layer.pool:
            last = i == len(spec.trunk) - 1
            layers.append((layer.pool, 1 if (last and fine) else layer.pool, 0, 1, cout, 0))
        cin = cout
    layers.append((spec.fc_kernel, 1, 0, k if fine else 1, cin, max(1, round(spec.classifier[0] * width))))
    return layers


def forward_bytes(arch: str, size: tuple[int, int], batch: int = 1, width: float = 1.0, fine: bool = True) -> int:
    """The peak bytes of one forward pass of ``batch`` images of ``size`` (height, width): the
    largest input + output + im2col of a layer, plus the input batch."""
    h, w = size
    peak = 0
    for kernel, stride, pad, dilation, cin, cout in _convs(arch, width, fine):
        oh = (h + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        ow = (w + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        if oh < 1 or ow < 1:
            break
        channels = cout or cin  # a pool keeps its channels
        im2col = kernel * kernel * cin * oh * ow if cout else 0
        peak = max(peak, cin * h * w + channels * oh * ow + im2col)
        h, w = oh, ow
    return FLOAT * batch * (peak + 3 * size[0] * size[1])


def parameter_bytes(arch: str, width: float, classes: int, heads: tuple[str, ...] = ("cls",)) -> int:
    """The bytes of a model's float32 weights: trunk, and per head its hidden layers and outputs."""
    spec = get_arch(arch)
    count, cin = 0, 3
    for layer in spec.trunk:
        cout = max(1, round(layer.channels * width))
        count += layer.kernel * layer.kernel * cin * cout
        cin = cout
    outputs = {"cls": classes, "loc": 4 * classes, "det": classes + 1}
    for head in heads:
        hidden = spec.regressor if head == "loc" else spec.classifier
        widths = [max(1, round(c * width)) for c in hidden]
        fan_in = spec.fc_kernel * spec.fc_kernel * cin
        for c in [*widths, outputs[head]]:
            count += fan_in * c
            fan_in = c
    return FLOAT * count


def image_bytes(pixels: int, flip: bool = True) -> int:
    """A decoded image of ``pixels`` and its float batch (with its mirror)."""
    return pixels * 3 * (1 + FLOAT * (2 if flip else 1))
