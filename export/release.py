"""The authors' released OverFeat weight files (``net_weight_0``: fast, ``net_weight_1``: accurate).

A released file is a flat array of little-endian float32 and nothing else: the layers one after
another, each its weight in [out, in, kh, kw] order, then its bias. That is exactly the order
and the shapes of this package's ``cls`` network with 1,000 classes, trunk first, so the file is
read in the model's own parameter order, memory-mapped: 16 MiB at a time is copied from the
mapped file straight into its tensor and its pages dropped, so no second copy of the 580 MB is
ever held. The class names are
compiled into the release's library, not stored in the file: ``classes_file`` gives them.

The released network differs from the paper's equations in one place: its activation is
``Threshold(0, 1e-6)`` (x where x > 0, else 1e-6) instead of ReLU. This package exports ReLU.
The difference on real-size random weights is measured in ``tests/test_release.py`` against a
literal re-implementation of the released network and stated in the README (well inside the
export tolerance).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from overfeat.errors import InputError, ModelError

FORMATS = ("auto", "state-dict", "overfeat-release")
RELEASE = "overfeat-release"
# exact sizes in bytes of the released files: 4 × the parameters of the cls network, 1,000 classes
SIZES = {"fast": 145_920_872 * 4, "accurate": 144_656_488 * 4}
FILES = {"fast": "net_weight_0", "accurate": "net_weight_1"}
CLASSES = 1000
_CHUNK = 1 << 22  # floats copied and checked at a time (16 MiB)


def _sizes_text() -> str:
    return " or ".join(f"{SIZES[a]:,} bytes ({a}, {FILES[a]})" for a in ("fast", "accurate"))


def detect(path: str | os.PathLike[str], fmt: str = "auto", arch: str | None = None) -> str | None:
    """The architecture of a released weight file at ``path``, or None for another format.

    ``fmt`` ``"auto"``: a released file is recognised by its exact size, when its name has no
    state_dict suffix; ``"overfeat-release"``: it must be one; ``"state-dict"``: never. ``arch``
    (if given) must be the file's."""
    if fmt not in FORMATS:
        raise InputError(f"`checkpoint_format` {fmt!r}: expected one of {', '.join(FORMATS)}")
    path = Path(path)
    if fmt == "state-dict" or (fmt == "auto" and path.suffix in (".pt", ".pth", ".safetensors")):
        return None
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist or is not a file")
    size = path.stat().st_size
    found = next((a for a, s in SIZES.items() if s == size), None)
    if found is None:
        if fmt == "auto" and path.suffix:
            return None  # another kind of file: the state_dict reader names what it expects
        raise ModelError(
            f"checkpoint {path} has {size:,} bytes: a released OverFeat weight file has exactly {_sizes_text()}; "
            "is it truncated, or another kind of file?"
        )
    if arch is not None and arch != found:
        raise InputError(
            f"`arch` {arch}: checkpoint {path} is the {found} network's released weights ({size:,} bytes); "
            f"the {arch} network's file ({FILES[arch]}) has {SIZES[arch]:,} bytes"
        )
    return found


def _release_pages(mapped: mmap.mmap, start: int, length: int) -> None:
    """Drop the mapped pages of bytes start..start+length that were read (whole pages only)."""
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, (start + length) // page * page
    if last > first and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


def load_release(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Copy the released weights at ``path`` into ``model`` (the cls network, 1,000 classes, full
    width) in place, layer by layer from the memory-mapped file; non-finite values are refused."""
    path = Path(path)
    params = [p for m in model.modules() if isinstance(m, nn.Conv2d) for p in (m.weight, m.bias)]
    total = sum(p.numel() for p in params)
    if path.stat().st_size != 4 * total:
        raise ModelError(
            f"checkpoint {path} has {path.stat().st_size:,} bytes, the model to load it into has {total:,} parameters "
            f"({4 * total:,} bytes): the released files hold the cls network with {CLASSES} classes at full width"
        )
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, torch.no_grad():
        offset = 0  # in floats
        for number, param in enumerate(params):
            count = param.numel()
            target = param.data.numpy().reshape(-1)  # the tensor's own memory
            for start in range(0, count, _CHUNK):
                n = min(_CHUNK, count - start)
                chunk = np.frombuffer(mapped, dtype="<f4", count=n, offset=4 * (offset + start))
                target[start : start + n] = chunk
                del chunk
                _release_pages(mapped, 4 * (offset + start), 4 * n)  # read once: out of this process's memory
                if not np.isfinite(target[start : start + n]).all():
                    layer, kind = divmod(number, 2)
                    raise ModelError(
                        f"checkpoint {path}: the {'bias' if kind else 'weight'} of layer {layer + 1} "
                        f"(floats {offset:,} to {offset + count:,}) holds NaN or infinite values"
                    )
            offset += count
    return model
