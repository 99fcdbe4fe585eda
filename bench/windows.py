"""The paper's efficiency argument, measured: one dense pass against every window on its own.

Dense output (i, j) at stride s looks at the window x0 = j·s, y0 = i·s of side S (the model's
window). Evaluated on its own, a window needs the pixels its padded convolutions see around
it: ``context`` pixels on each side (the padding of the layers after the last subsampling,
in input pixels). :func:`per_window` crops each window with that context (clipped at the image
edge, where the dense pass pads exactly as the crop does), runs the model on the crop and reads
the one output that belongs to the window. The result equals the dense map, which
:func:`compare_dense_and_windows` checks while timing both.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from overfeat.geometry import SpatialOp
from overfeat.metadata import INPUT_NAME, ModelMeta


def context(ops: tuple[SpatialOp, ...]) -> int:
    """Input pixels a window's outputs depend on beyond the window, on each side."""
    total, jump = 0, 1
    for op in ops:
        total += op.pad * jump
        jump *= op.stride
    return total


def per_window(run, image: np.ndarray, meta: ModelMeta) -> dict[str, np.ndarray]:
    """The dense maps of ``image`` [1, 3, H, W], computed one window at a time."""
    _, _, height, width = image.shape
    h, w = meta.map_size((height, width))
    s, size, ctx = meta.stride, meta.window, context(meta.geometry)
    out: dict[str, np.ndarray] = {}
    for i in range(h):
        y0 = i * s
        top, bottom = max(0, y0 - ctx), min(height, y0 + size + ctx)
        for j in range(w):
            x0 = j * s
            left, right = max(0, x0 - ctx), min(width, x0 + size + ctx)
            maps = run({INPUT_NAME: np.ascontiguousarray(image[:, :, top:bottom, left:right])})
            for name, value in maps.items():
                if name not in out:
                    out[name] = np.empty((1, value.shape[1], h, w), dtype=value.dtype)
                out[name][0, :, i, j] = value[0, :, (y0 - top) // s, (x0 - left) // s]
    return out


def compare_dense_and_windows(run, meta: ModelMeta, size: tuple[int, int], seed: int = 0) -> dict[str, Any]:
    """Time one dense pass and the per-window evaluation of the same random image at ``size``;
    the largest difference between their outputs relative to the dense output's range."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, 3, *size)).astype(np.float32)
    run({INPUT_NAME: image})  # warm-up
    start = time.perf_counter()
    dense = run({INPUT_NAME: image})
    dense_s = time.perf_counter() - start
    start = time.perf_counter()
    windows = per_window(run, image, meta)
    windows_s = time.perf_counter() - start
    worst = max(float(np.abs(dense[k] - windows[k]).max() / max(np.abs(dense[k]).max(), 1e-12)) for k in dense)
    h, w = meta.map_size(size)
    return {
        "size": list(size),
        "windows": h * w,
        "context_px": context(meta.geometry),
        "dense_s": dense_s,
        "per_window_s": windows_s,
        "speedup": windows_s / dense_s,
        "max_relative_difference": worst,
    }
