"""Box geometry in NumPy: window decoding, IoU and non-maximum suppression.

Boxes are (x1, y1, x2, y2) in pixels, float64, x2 ≥ x1 and y2 ≥ y1.
"""

from __future__ import annotations

import numpy as np

from overfeat.metadata import ModelMeta

from .pyramid import Scale


def window_origins(map_size: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """x0 [h, w] and y0 [h, w]: the top-left corner of each output's window, in input pixels."""
    h, w = map_size
    y0, x0 = np.meshgrid(np.arange(h, dtype=np.float64) * stride, np.arange(w, dtype=np.float64) * stride, indexing="ij")
    return x0, y0


def decode_boxes(encoded: np.ndarray, meta: ModelMeta, scale: Scale, flipped: bool) -> np.ndarray:
    """Regressor maps to boxes in original-image pixels.

    encoded: ndarray[4, h, w], (x1 − x0)/S, (y1 − y0)/S, (x2 − x0)/S, (y2 − y0)/S for the window
    at (x0, y0) = (j·stride, i·stride) of size S = window, in the resized (and, if ``flipped``,
    mirrored) image. Returns ndarray[h, w, 4]. Mirrored x becomes W − x; coordinates are divided
    by the scale's resize factors; a box whose corners come out swapped is put in order, and
    boxes are clipped to the original image (objects do not extend past it).
    """
    S = float(meta.window)
    x0, y0 = window_origins(encoded.shape[1:], meta.stride)
    e = encoded.astype(np.float64)
    x1, y1, x2, y2 = x0 + e[0] * S, y0 + e[1] * S, x0 + e[2] * S, y0 + e[3] * S
    if flipped:
        width = scale.size[1]
        x1, x2 = width - x2, width - x1
    fy, fx = scale.factor
    boxes = np.stack([x1 / fx, y1 / fy, x2 / fx, y2 / fy], axis=-1)
    lo = np.minimum(boxes[..., :2], boxes[..., 2:])
    hi = np.maximum(boxes[..., :2], boxes[..., 2:])
    limit = np.array([scale.image[1], scale.image[0]], dtype=np.float64)  # original width, height
    return np.concatenate([np.clip(lo, 0, limit), np.clip(hi, 0, limit)], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a: ndarray[N, 4] with b: ndarray[M, 4] → ndarray[N, M] (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of boxes: ndarray[N, 4] with scores: ndarray[N].

    Returns the kept indices, best score first. A box is suppressed when its IoU with a kept,
    higher-ranked box is greater than ``iou_threshold``. Equal scores rank by input order.
    """
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    keep: list[int] = []
    overlaps = iou(boxes[order], boxes[order]) if len(order) else np.zeros((0, 0))
    suppressed = np.zeros(len(order), dtype=bool)
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(int(order[rank]))
        suppressed |= overlaps[rank] > iou_threshold
    return np.asarray(keep, dtype=np.int64)
