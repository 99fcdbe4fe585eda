"""A k-d tree of boxes for the compiled kernels (numba): built once, boxes leave it (and a
merged box may take a leaving box's slot), and a query skips every node whose boxes cannot
overlap the query box enough.

Boxes are rows of a feature array ``f`` (columns below). The tree is built over the first m
rows, median splits of the coordinate (x1, y1, x2 or y2) that varies most, at most ``leaf_size``
boxes a leaf, and starts empty: boxes enter it with :func:`insert`. A leaf's present boxes fill
its first slots (``perm`` holds their numbers, ``sf`` their features in columns, so a query
reads them in one pass), and its ranges are recomputed when a box leaves (:func:`refresh`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LEAF = 64  # most boxes in a leaf
SLACK = 1e-9  # the margin of the IoU bound, far above rounding (a few units of 2⁻⁵³)
STACK = 128  # a query's stack holds at most the tree's depth + 1 nodes (depth ≤ log2(n) + 1)
FLAGS = dict(cache=True, nogil=True, error_model="numpy")

# Columns of the feature array: the box and per-box terms of the merge's dissimilarity.
X1, Y1, X2, Y2, AREA, SX, SY, DIAG = range(8)
# Columns of the node table: children (-1 for a leaf), slot range, boxes present, parent, split
# dimension; the least first member of its boxes (a lower bound: boxes only leave, and a merged
# box's first member is that of a box it replaces in the same leaf); the oldest box present
# (its number; NONE when empty), so that a query can skip nodes holding no older box.
LEFT, RIGHT, START, END, COUNT, PARENT, DIM, FIRST, OLDEST = range(9)
NONE = 2**62


@njit(**FLAGS)
def allocate(slots, boxes, leaf_size):
    """The tree's arrays for a tree over ``slots`` boxes and box numbers below ``boxes``:
    perm and sf (per slot), slot and leaf (per box), the node table and the nodes' ranges (least
    x1, y1, x2, y2 in columns 0–3, greatest in 4–7). Every leaf holds at least leaf_size // 2
    boxes, which bounds the number of nodes."""
    most = 2 * (slots // max(leaf_size // 2, 1) + 1) + 1
    return (
        np.empty(slots, np.int64),
        np.empty((8, slots)),
        np.empty(boxes, np.int64),
        np.empty(boxes, np.int64),
        np.empty((most, 9), np.int64),
        np.empty((most, 8)),
    )


@njit(**FLAGS)
def set_features(f, k, x1, y1, x2, y2):
    """Row k of f: the box and the per-box terms of d, computed as the reference does."""
    w = x2 - x1
    h = y2 - y1
    f[k, X1], f[k, Y1], f[k, X2], f[k, Y2] = x1, y1, x2, y2
    f[k, AREA] = w * h
    f[k, SX] = x1 + x2
    f[k, SY] = y1 + y2
    f[k, DIAG] = math.sqrt(w * w + h * h)


@njit(inline="always", **FLAGS)
def most_iou(wq, hq, short_x, over_x, short_y, over_y):
    """The largest IoU of the query box (wq × hq) with a box whose sides fall short of the
    query's ends by at least short_x, short_y in all and stick out of them by at least over_x,
    over_y: the IoU of such a box decreases with each of the four, so it is their IoU.

    A box b meets q on a width iw = wq − shortfall, is iw + overhang wide, and so on in y; its
    IoU is iw·ih / (wq·hq + (iw + ox)(ih + oy) − iw·ih).
    """
    iw = wq - short_x
    ih = hq - short_y
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    return inter / (wq * hq + (iw + over_x) * (ih + over_y) - inter)


@njit(inline="always", **FLAGS)
def iou_below(qx1, qy1, qx2, qy2, x1_lo, x1_hi, y1_lo, y1_hi, x2_lo, x2_hi, y2_lo, y2_hi, floor):
    """True when every box whose coordinates lie in the given ranges (for one box, its
    coordinates) has an IoU with the query box below ``floor``, as any of the kernels computes
    IoU: the least shortfalls and overhangs the ranges allow give the largest IoU
    (:func:`most_iou`). Rounding moves a computed IoU by a few units in the last place (each
    gap is one subtraction, exact to a relative 2⁻⁵³), so a margin of 1e-9 never prunes a box at
    the floor. With floor ≤ 0 nothing is below it."""
    if floor - SLACK <= 0.0:
        return False
    short_x = max(x1_lo - qx1, 0.0) + max(qx2 - x2_hi, 0.0)
    over_x = max(qx1 - x1_hi, 0.0) + max(x2_lo - qx2, 0.0)
    short_y = max(y1_lo - qy1, 0.0) + max(qy2 - y2_hi, 0.0)
    over_y = max(qy1 - y1_hi, 0.0) + max(y2_lo - qy2, 0.0)
    return most_iou(qx2 - qx1, qy2 - qy1, short_x, over_x, short_y, over_y) < floor - SLACK


@njit(inline="always", **FLAGS)
def node_below(q, f, nodes, bounds, node, floor):
    """:func:`iou_below` for the boxes of a node."""
    return iou_below(
        f[q, X1],
        f[q, Y1],
        f[q, X2],
        f[q, Y2],
        bounds[node, X1],
        bounds[node, 4 + X1],
        bounds[node, Y1],
        bounds[node, 4 + Y1],
        bounds[node, X2],
        bounds[node, 4 + X2],
        bounds[node, Y2],
        bounds[node, 4 + Y2],
        floor,
    )


@njit(**FLAGS)
def grow(bounds, node, f, b):
    """Widen a node's ranges of x1, y1, x2, y2 (least in columns 0–3, greatest in 4–7) to b's."""
    for k in range(4):
        bounds[node, k] = min(bounds[node, k], f[b, k])
        bounds[node, 4 + k] = max(bounds[node, 4 + k], f[b, k])


@njit(**FLAGS)
def build(f, m, leaf_size, perm, leaf, nodes, bounds):
    """A k-d tree over the first m boxes of f (median splits of the coordinate that varies most,
    at most ``leaf_size`` boxes a leaf), each box's leaf in ``leaf``; returns the number of
    nodes. The tree starts empty: boxes enter it with :func:`insert`."""
    for s in range(m):
        perm[s] = s
    stack = np.empty(STACK, np.int64)
    top = 0
    stack[top] = 0
    top += 1
    nodes[0, START], nodes[0, END], nodes[0, PARENT] = 0, m, -1
    used = 1
    while top:
        top -= 1
        node = stack[top]
        start, end = nodes[node, START], nodes[node, END]
        bounds[node, :4] = np.inf
        bounds[node, 4:] = -np.inf
        for s in range(start, end):
            grow(bounds, node, f, perm[s])
        nodes[node, COUNT], nodes[node, OLDEST] = 0, NONE
        nodes[node, FIRST] = perm[start:end].min()  # input boxes are their own first members
        if end - start <= leaf_size:
            nodes[node, LEFT] = nodes[node, RIGHT] = -1
            for s in range(start, end):
                leaf[perm[s]] = node
            continue
        dim = 0
        for k in range(1, 4):
            if bounds[node, 4 + k] - bounds[node, k] > bounds[node, 4 + dim] - bounds[node, dim]:
                dim = k
        members = perm[start:end].copy()
        perm[start:end] = members[np.argsort(f[members, dim], kind="mergesort")]
        mid = (start + end) // 2
        nodes[node, DIM] = dim
        nodes[node, LEFT], nodes[node, RIGHT] = used, used + 1
        nodes[used, START], nodes[used, END], nodes[used, PARENT] = start, mid, node
        nodes[used + 1, START], nodes[used + 1, END], nodes[used + 1, PARENT] = mid, end, node
        stack[top], stack[top + 1] = used, used + 1
        top += 2
        used += 2
    return used


@njit(**FLAGS)
def place(b, s, f, perm, slot, sf):
    """Put box b in slot s: its number in perm, its features in column s of sf."""
    perm[s], slot[b] = b, s
    for k in range(8):
        sf[k, s] = f[b, k]


@njit(**FLAGS)
def insert(b, f, perm, slot, sf, leaf, nodes):
    """Box b enters its leaf, after the leaf's present boxes (a leaf's boxes fill its first
    slots, so a search reads no empty slot)."""
    node = leaf[b]
    place(b, nodes[node, START] + nodes[node, COUNT], f, perm, slot, sf)
    while node >= 0:
        nodes[node, COUNT] += 1
        nodes[node, OLDEST] = min(nodes[node, OLDEST], b)
        node = nodes[node, PARENT]


@njit(**FLAGS)
def remove(b, f, perm, slot, sf, leaf, nodes, bounds):
    """Box b leaves the tree: the last present box of its leaf takes its slot, and the ranges
    of the leaf and its ancestors are recomputed."""
    node = leaf[b]
    last = nodes[node, START] + nodes[node, COUNT] - 1
    place(perm[last], slot[b], f, perm, slot, sf)
    while node >= 0:
        nodes[node, COUNT] -= 1
        node = nodes[node, PARENT]
    refresh(leaf[b], perm, sf, nodes, bounds)


@njit(**FLAGS)
def refresh(node, perm, sf, nodes, bounds):
    """Recompute the oldest box and the coordinate ranges of a leaf's present boxes, then of
    its ancestors from their children."""
    oldest = NONE
    for k in range(4):
        bounds[node, k], bounds[node, 4 + k] = np.inf, -np.inf
    for s in range(nodes[node, START], nodes[node, START] + nodes[node, COUNT]):
        oldest = min(oldest, perm[s])
        for k in range(4):
            bounds[node, k] = min(bounds[node, k], sf[k, s])
            bounds[node, 4 + k] = max(bounds[node, 4 + k], sf[k, s])
    nodes[node, OLDEST] = oldest
    node = nodes[node, PARENT]
    while node >= 0:
        left, right = nodes[node, LEFT], nodes[node, RIGHT]
        nodes[node, OLDEST] = min(nodes[left, OLDEST], nodes[right, OLDEST])
        for k in range(4):
            bounds[node, k] = min(bounds[left, k], bounds[right, k])
            bounds[node, 4 + k] = max(bounds[left, 4 + k], bounds[right, 4 + k])
        node = nodes[node, PARENT]
