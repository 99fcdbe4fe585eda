"""Box geometry in NumPy: window decoding, IoU and non-maximum suppression (plain and voting).

Boxes are (x1, y1, x2, y2) in pixels, float64, x2 ≥ x1 and y2 ≥ y1.
"""

from __future__ import annotations

import numpy as np

from overfeat.errors import InputError
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


def _nms_inputs(name: str, boxes, scores, iou_threshold: float, least: float) -> tuple[np.ndarray, np.ndarray]:
    """boxes [N, 4] and scores [N] as float64; an InputError unless the scores are one finite
    number ≥ ``least`` per box and the threshold is a finite number."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(boxes),) or not np.isfinite(scores).all() or (len(scores) and scores.min() < least):
        floor = f" ≥ {least:g}" if np.isfinite(least) else ""
        raise InputError(f"{name} needs one finite score{floor} per box: got scores of shape {list(scores.shape)} for {len(boxes)} boxes"
                         + (f", least {scores.min()}" if scores.size else ""))
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.floating)) or not np.isfinite(iou_threshold):
        raise InputError(f"{name}: the IoU threshold must be a finite number, got {iou_threshold!r}")
    return boxes, scores


def nms_clusters(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[np.ndarray]:
    """The clusters of greedy non-maximum suppression: boxes ndarray[N, 4], scores ndarray[N].

    Repeatedly, the best remaining box (equal scores in input order) and every remaining box
    whose IoU with it is greater than ``iou_threshold`` form a cluster (a box of no area overlaps
    nothing, but still founds its own). Returns each cluster's input indices, its founder first
    and the others by rank. Each cluster costs one IoU row against the boxes still unassigned, so
    the time is O(N · K) with small constants, against the merge's O(N²) matrix.
    """
    boxes, scores = _nms_inputs("nms", boxes, scores, iou_threshold, least=-np.inf)
    rest = np.lexsort((np.arange(len(scores)), -scores))
    clusters = []
    while len(rest):
        near = iou(boxes[rest[:1]], boxes[rest])[0] > iou_threshold
        near[0] = True
        clusters.append(rest[near])
        rest = rest[~near]
    return clusters


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of boxes: ndarray[N, 4] with scores: ndarray[N].

    Returns the kept indices, best score first: the founders of :func:`nms_clusters`. A box is
    suppressed when its IoU with a kept, higher-ranked box is greater than ``iou_threshold``.
    Equal scores rank by input order.
    """
    return np.asarray([c[0] for c in nms_clusters(boxes, scores, iou_threshold)], dtype=np.int64)


def nms_vote(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-maximum suppression in which the suppressed boxes vote: boxes ndarray[N, 4], scores
    ndarray[N] ≥ 0 (probabilities).

    Each cluster of :func:`nms_clusters` gives one box, the score-weighted mean of its members
    (their plain mean if the scores sum to 0), scored with the sum of its members' scores, as
    the greedy merge scores its boxes. Returns (boxes [K, 4], scores [K], counts [K]) in cluster
    order (the order of :func:`nms`'s kept boxes).
    """
    boxes, scores = _nms_inputs("nms_vote", boxes, scores, iou_threshold, least=0.0)
    out_boxes, out_scores, counts = [], [], []
    for members in nms_clusters(boxes, scores, iou_threshold):
        out_boxes.append(weighted_box(boxes[members], scores[members]))
        out_scores.append(scores[members].sum())
        counts.append(len(members))
    return np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4), np.asarray(out_scores, dtype=np.float64), np.asarray(counts, dtype=np.int64)


def weighted_box(boxes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of boxes [M, 4] (M ≥ 1) with weights [M] ≥ 0; their plain mean if the
    weights sum to 0."""
    total = weights.sum()
    return (weights @ boxes) / total if total > 0 else boxes.mean(axis=0)
