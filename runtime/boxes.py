"""Box geometry in NumPy: window decoding, IoU and non-maximum suppression (plain and voting).

Boxes are (x1, y1, x2, y2) in pixels, float64, x2 ≥ x1 and y2 ≥ y1.
"""

from __future__ import annotations

import numpy as np

from overfeat.errors import InputError
from overfeat.metadata import ModelMeta

from .kernels import compiled, resolve_kernel
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


def decode_at(
    boxes: np.ndarray, batch: np.ndarray, label: np.ndarray, row: np.ndarray, column: np.ndarray, meta: ModelMeta, scale: Scale
) -> np.ndarray:
    """:func:`decode_boxes` at chosen locations only: boxes is a scale's regressor output
    ndarray[B, 4·C or 4, h, w] (batch 1 the mirror), and each candidate its batch, class, row
    and column → ndarray[N, 4], the same values as decoding the whole maps (the arithmetic is
    elementwise and the same)."""
    channel = 4 * label if meta.box_per_class else np.zeros_like(label)
    e = boxes[batch[:, None], channel[:, None] + np.arange(4), row[:, None], column[:, None]].astype(np.float64)  # [N, 4]
    S = float(meta.window)
    x0 = column.astype(np.float64) * meta.stride
    y0 = row.astype(np.float64) * meta.stride
    x1, y1, x2, y2 = x0 + e[:, 0] * S, y0 + e[:, 1] * S, x0 + e[:, 2] * S, y0 + e[:, 3] * S
    flipped = batch == 1
    width = scale.size[1]
    x1, x2 = np.where(flipped, width - x2, x1), np.where(flipped, width - x1, x2)
    fy, fx = scale.factor
    out = np.stack([x1 / fx, y1 / fy, x2 / fx, y2 / fy], axis=-1)
    lo = np.minimum(out[:, :2], out[:, 2:])
    hi = np.maximum(out[:, :2], out[:, 2:])
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
        raise InputError(
            f"{name} needs one finite score{floor} per box: got scores of shape {list(scores.shape)} for {len(boxes)} boxes"
            + (f", least {scores.min()}" if scores.size else "")
        )
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float, np.floating))
        or not np.isfinite(iou_threshold)
    ):
        raise InputError(f"{name}: the IoU threshold must be a finite number, got {iou_threshold!r}")
    return boxes, scores


def suppress(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, kernel: str = "auto"
) -> np.ndarray:
    """Greedy non-maximum suppression within each class: boxes ndarray[N, 4], scores ndarray[N],
    classes ndarray[N] (integers) → ndarray[N], the input index of each box's cluster founder.

    Per class, repeatedly, the best remaining box (equal scores in input order) founds a cluster
    of itself and every remaining box whose IoU with it is greater than ``iou_threshold`` (a box
    of no area overlaps nothing, but still founds its own). ``kernel`` (see
    :mod:`overfeat.runtime.kernels`): the compiled kernel finds each cluster with a k-d tree
    query; the NumPy one takes one IoU row per cluster against the boxes still unassigned,
    O(N · K). Both give the same clusters.
    """
    boxes, scores = _nms_inputs("nms", boxes, scores, iou_threshold, least=-np.inf)
    classes = np.asarray(classes)
    if classes.shape != scores.shape or (len(classes) and not np.issubdtype(classes.dtype, np.integer)):
        raise InputError(
            f"nms needs one integer class per box: got classes of shape {list(classes.shape)} and dtype {classes.dtype} for {len(boxes)} boxes"
        )
    founder = np.empty(len(boxes), dtype=np.int64)
    if not len(boxes):
        return founder
    order = np.argsort(classes, kind="stable")  # each class's boxes together, in input order
    sorted_classes = classes[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_classes[1:] != sorted_classes[:-1], [True]]))
    if resolve_kernel(kernel) == "compiled":
        kernels = compiled()
        local = kernels.nms.nms_groups(
            np.ascontiguousarray(boxes[order]),
            np.ascontiguousarray(scores[order]),
            starts.astype(np.int64),
            float(iou_threshold),
            kernels.tree.LEAF,
        )
        founder[order] = order[local + np.repeat(starts[:-1], np.diff(starts))]  # group-relative rows → input indices
        return founder
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        rows = order[lo:hi]
        for members in _clusters_numpy(boxes[rows], scores[rows], iou_threshold):
            founder[rows[members]] = rows[members[0]]
    return founder


def _clusters_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[np.ndarray]:
    rest = np.lexsort((np.arange(len(scores)), -scores))
    clusters = []
    while len(rest):
        near = iou(boxes[rest[:1]], boxes[rest])[0] > iou_threshold
        near[0] = True
        clusters.append(rest[near])
        rest = rest[~near]
    return clusters


def nms_clusters(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, kernel: str = "auto") -> list[np.ndarray]:
    """The clusters of greedy non-maximum suppression (:func:`suppress`, one class) of boxes
    ndarray[N, 4] with scores ndarray[N]: each cluster's input indices, its founder first and the
    others by rank, the clusters in the order they were founded."""
    founder = suppress(boxes, scores, np.zeros(len(np.asarray(scores).reshape(-1)), dtype=np.int64), iou_threshold, kernel)
    rank = np.lexsort((np.arange(len(founder)), -np.asarray(scores, dtype=np.float64)))
    heads = rank[founder[rank] == rank]  # founders, in rank order: the order of founding
    position = np.empty(len(founder), dtype=np.int64)
    position[heads] = np.arange(len(heads))
    ranked = rank[np.argsort(position[founder[rank]], kind="stable")]  # by cluster, by rank within it
    return np.split(ranked, np.cumsum(np.bincount(position[founder], minlength=len(heads)))[:-1]) if len(heads) else []


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, kernel: str = "auto") -> np.ndarray:
    """Greedy non-maximum suppression of boxes: ndarray[N, 4] with scores: ndarray[N].

    Returns the kept indices, best score first: the founders of :func:`nms_clusters`. A box is
    suppressed when its IoU with a kept, higher-ranked box is greater than ``iou_threshold``.
    Equal scores rank by input order.
    """
    return np.asarray([c[0] for c in nms_clusters(boxes, scores, iou_threshold, kernel)], dtype=np.int64)


def nms_vote(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, kernel: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-maximum suppression in which the suppressed boxes vote: boxes ndarray[N, 4], scores
    ndarray[N] ≥ 0 (probabilities).

    Each cluster of :func:`nms_clusters` gives one box, the score-weighted mean of its members
    (their plain mean if the scores sum to 0), scored with the sum of its members' scores, as
    the greedy merge scores its boxes (:func:`vote`). Returns (boxes [K, 4], scores [K], counts
    [K]) in cluster order (the order of :func:`nms`'s kept boxes).
    """
    boxes, scores = _nms_inputs("nms_vote", boxes, scores, iou_threshold, least=0.0)
    founder = suppress(boxes, scores, np.zeros(len(scores), dtype=np.int64), iou_threshold, kernel)
    heads, out_boxes, out_scores, counts = vote(boxes, scores, founder)
    return out_boxes, out_scores, counts


def vote(boxes: np.ndarray, scores: np.ndarray, founder: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The clusters of :func:`suppress` (``founder``: each box's founder) voted: per cluster, in
    the founders' rank order, the founder, Σ s·b / Σ s over its members (their plain mean where
    Σ s = 0), Σ s and the number of members. Sums run over the members in rank order.

    Returns (founders [K], boxes [K, 4], scores [K], counts [K]).
    """
    rank = np.lexsort((np.arange(len(scores)), -scores))
    heads = rank[founder[rank] == rank]
    position = np.empty(len(scores), dtype=np.int64)
    position[heads] = np.arange(len(heads))
    cluster, k = position[founder[rank]], len(heads)
    s, b = scores[rank], boxes[rank]
    total = np.bincount(cluster, weights=s, minlength=k)
    counts = np.bincount(cluster, minlength=k)
    weighted = np.stack([np.bincount(cluster, weights=s * b[:, j], minlength=k) for j in range(4)], axis=1)
    plain = np.stack([np.bincount(cluster, weights=b[:, j], minlength=k) for j in range(4)], axis=1)
    positive = total > 0
    out = np.where(positive[:, None], weighted / np.where(positive, total, 1.0)[:, None], plain / np.maximum(counts, 1)[:, None])
    return heads, out.reshape(-1, 4), total, counts.astype(np.int64)
