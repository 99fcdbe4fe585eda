"""A pyramid scale's batch (:func:`overfeat.runtime.pyramid.make_batch`) as a compiled kernel
(numba): resizing, normalising and mirroring in one pass over the output, row by row, the same
float32 values exactly.

The NumPy path resizes along the rows, then along the columns, one filter tap at a time
(``out = x₀·w₀``, then ``out += xₖ·wₖ``, each product and sum rounded to float32), then
subtracts the mean and multiplies by 1/std. This kernel performs the same float32 operations
in the same order for every value (numba without ``fastmath`` fuses no multiply-add), so its
batch equals the NumPy one bit for bit; it only avoids the NumPy path's temporaries and passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tree import FLAGS


@njit(**FLAGS)
def planes(image):
    """image: float32[H, W, C] → float32[C, H, W], once per image for all its scales."""
    height, width, channels = image.shape
    out = np.empty((channels, height, width), np.float32)
    for y in range(height):
        for x in range(width):
            for c in range(channels):
                out[c, y, x] = image[y, x, c]
    return out


@njit(**FLAGS)
def batch(planes, rows_index, rows_weight, cols_index, cols_weight, mean, inv_std, flip):
    """planes: float32[C, H, W] (:func:`planes`); the row and column filters (indices and
    float32 weights, one row per output pixel, as :func:`overfeat.runtime.image.filter_taps`
    gives them); mean and inv_std: float32[C] → float32[2 or 1, C, h, w], the normalised image
    and its mirror. Each output row is resampled along the columns into a buffer (a SIMD loop
    over the row), then along the rows, normalised and mirrored."""
    channels, height, width = planes.shape
    h, row_taps = rows_index.shape
    w, col_taps = cols_index.shape
    row = np.empty(width, np.float32)
    out = np.empty((2 if flip else 1, channels, h, w), np.float32)
    for c in range(channels):
        m, s = mean[c], inv_std[c]
        for i in range(h):
            source, weight = rows_index[i, 0], rows_weight[i, 0]
            for x in range(width):
                row[x] = planes[c, source, x] * weight
            for k in range(1, row_taps):
                source, weight = rows_index[i, k], rows_weight[i, k]
                for x in range(width):
                    row[x] += planes[c, source, x] * weight
            for j in range(w):
                value = row[cols_index[j, 0]] * cols_weight[j, 0]
                for k in range(1, col_taps):
                    value += row[cols_index[j, k]] * cols_weight[j, k]
                out[0, c, i, j] = (value - m) * s
            if flip:
                for j in range(w):
                    out[1, c, i, j] = out[0, c, i, w - 1 - j]
    return out
