"""The clusters of greedy non-maximum suppression (:func:`overfeat.runtime.boxes.nms_clusters`) as
a compiled kernel (numba), the same clusters exactly.

Per class, boxes are taken in rank order (score descending, then input order); the best box
not yet in a cluster founds one, and every box not yet in a cluster whose IoU with it is above
the threshold joins it. Instead of one IoU row against all the remaining boxes per cluster,
the remaining boxes sit in a k-d tree (:mod:`.tree`), from which each cluster's members are
found by a query that skips the nodes whose boxes cannot reach the threshold, and then leave
it. IoU is computed with :func:`overfeat.runtime.boxes.iou`'s operations.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tree import (
    AREA,
    COUNT,
    FLAGS,
    LEAF,
    LEFT,
    RIGHT,
    STACK,
    START,
    X1,
    X2,
    Y1,
    Y2,
    allocate,
    build,
    insert,
    node_below,
    remove,
    set_features,
)


@njit(**FLAGS)
def _iou(ax1, ay1, ax2, ay2, aarea, bx1, by1, bx2, by2, barea):
    """IoU as :func:`overfeat.runtime.boxes.iou` computes it (0 where the union is empty)."""
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = aarea + barea - inter
    return inter / union if union > 0 else 0.0


@njit(**FLAGS)
def _members(q, f, perm, sf, nodes, bounds, stack, threshold, found):
    """The boxes in the tree whose IoU with box q is above the threshold, into ``found``;
    returns how many."""
    qx1, qy1, qx2, qy2, qarea = f[q, X1], f[q, Y1], f[q, X2], f[q, Y2], f[q, AREA]
    n = 0
    top = 1
    stack[0] = 0
    while top:
        top -= 1
        node = stack[top]
        if nodes[node, COUNT] == 0 or node_below(q, f, nodes, bounds, node, threshold):
            continue
        if nodes[node, LEFT] >= 0:
            stack[top], stack[top + 1] = nodes[node, LEFT], nodes[node, RIGHT]
            top += 2
            continue
        for s in range(nodes[node, START], nodes[node, START] + nodes[node, COUNT]):
            if _iou(qx1, qy1, qx2, qy2, qarea, sf[X1, s], sf[Y1, s], sf[X2, s], sf[Y2, s], sf[AREA, s]) > threshold:
                found[n] = perm[s]
                n += 1
    return n


@njit(**FLAGS)
def nms_groups(boxes, scores, starts, threshold, leaf_size=LEAF):
    """NMS clusters of each group of rows ``starts[g]:starts[g + 1]`` (one class each) of
    boxes: float64[N, 4] and scores: float64[N].

    Returns founders: int64[N], for each row the row of its cluster's founder, counted from
    the start of its group.
    """
    n = boxes.shape[0]
    largest = 1
    for g in range(len(starts) - 1):
        largest = max(largest, starts[g + 1] - starts[g])
    f = np.empty((largest, 8))
    perm, sf, slot, leaf, nodes, bounds = allocate(largest, largest, leaf_size)
    stack, found = np.empty(STACK, np.int64), np.empty(largest, np.int64)
    founders = np.full(n, -1, np.int64)
    for g in range(len(starts) - 1):
        lo, m = starts[g], starts[g + 1] - starts[g]
        for k in range(m):
            set_features(f, k, boxes[lo + k, 0], boxes[lo + k, 1], boxes[lo + k, 2], boxes[lo + k, 3])
        build(f, m, leaf_size, perm, leaf, nodes, bounds)
        for k in range(m):
            insert(k, f, perm, slot, sf, leaf, nodes)
        rank = np.argsort(-scores[lo : lo + m], kind="mergesort")  # score descending, then input order
        for q in rank:
            if founders[lo + q] >= 0:
                continue
            founders[lo + q] = q
            remove(q, f, perm, slot, sf, leaf, nodes, bounds)
            for t in range(_members(q, f, perm, sf, nodes, bounds, stack, threshold, found)):
                founders[lo + found[t]] = q
                remove(found[t], f, perm, slot, sf, leaf, nodes, bounds)
    return founders
