"""The greedy merge of :mod:`overfeat.runtime.merge` as a compiled kernel (numba).

It gives the same boxes, scores, counts, members and order as the literal reference, bit for
bit (the dissimilarity and the merged box are computed with the reference's operations, in its
order, without ``fastmath``).

**Each pair belongs to its younger box.** Boxes are numbered in the order they come into being:
the class's input boxes 0..m−1 in input order, then each merged box with the next number. A
box's *row* keeps the smallest (d, first, second) over the pairs it owns (those with an older,
still active box) with d ≤ threshold, and the partner it was found with; ``first`` and
``second`` are the pair's first members in input order, the reference's tie order. Boxes never
change (a merge ends two boxes and makes a new one), so an owned pair's d never changes, and a
row's owned set only shrinks: its record is a lower bound of its true minimum, exact while the
partner is active. A tournament tree over the rows gives the smallest record; if its partner
has gone, that row is searched again, otherwise it is the pair the literal loop merges next. A
merge searches only the new box's row (it owns every pair it is in).

**Each search is a pruned nearest-neighbour query** in a k-d tree (:mod:`.tree`) over the
class's input boxes, which enter it in order (a row's first search meets only the older
boxes). A merged box takes the tree slot of its first member and the other member leaves. A
node is skipped when it holds no box older than the query, or when no box within its
coordinate ranges can come within the best d found so far: d ≥ 1 − IoU, and the ranges bound
the IoU (:func:`.tree.iou_below`, whose margin keeps every pair at the best d, so ties are
always found; with a bound ≥ 1 boxes need not overlap and nothing is pruned). Once a pair at d = 0 is found (no d is below
0), a node is also skipped when all its boxes come later in input order. A leaf's boxes sit in
consecutive slots, their coordinates in columns: one branch-free pass (SIMD) applies the same
IoU test to each, then the exact d is computed for those that pass.

Memory is O(n), about 0.5 KiB per box of the largest class: no pairwise matrix.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .tree import (
    AREA,
    COUNT,
    DIAG,
    DIM,
    FIRST,
    FLAGS,
    LEAF,
    LEFT,
    OLDEST,
    RIGHT,
    STACK,
    START,
    SX,
    SY,
    X1,
    X2,
    Y1,
    Y2,
    allocate,
    build,
    insert,
    iou_below,
    node_below,
    place,
    refresh,
    remove,
    set_features,
)


@njit(**FLAGS)
def _distance(ax1, ay1, ax2, ay2, aarea, asx, asy, adiag, bx1, by1, bx2, by2, barea, bsx, bsy, bdiag, weight):
    """d(a, b), operation for operation as ``tests/reference.py`` computes it."""
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = aarea + barea - inter
    iou = inter / union if union > 0 else 0.0
    dx = asx - bsx
    dy = asy - bsy
    return (1.0 - iou) + weight * (math.sqrt(dx * dx + dy * dy) / max(adiag + bdiag, 1e-12))


@njit(**FLAGS)
def _search(q, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight):
    """The smallest (d, lo, hi) with d ≤ threshold over the pairs (q, b), b < q active, where
    (lo, hi) are the two boxes' first members in order; and b. (inf, -1, -1, -1) if none."""
    qx1, qy1, qx2, qy2 = f[q, X1], f[q, Y1], f[q, X2], f[q, Y2]
    qarea, qsx, qsy, qdiag = f[q, AREA], f[q, SX], f[q, SY], f[q, DIAG]
    qfirst = first[q]
    best_d, best_lo, best_hi, best_b = threshold, -1, -1, -1
    top = 1
    stack[0] = 0
    while top:
        top -= 1
        node = stack[top]
        if nodes[node, OLDEST] >= q:
            continue  # no box here that q owns a pair with
        if best_d == 0.0 and best_b >= 0:  # no d is below 0: only a pair earlier in input order can win
            least = nodes[node, FIRST]
            lo, hi = min(qfirst, least), max(qfirst, least)
            if lo > best_lo or (lo == best_lo and hi >= best_hi):
                continue
        if node_below(q, f, nodes, bounds, node, 1.0 - best_d):  # d ≥ 1 − IoU > best_d for all its boxes
            continue
        left = nodes[node, LEFT]
        if left >= 0:
            right = nodes[node, RIGHT]
            dim = nodes[node, DIM]
            # Visit first the child whose boxes are nearer the query's coordinate.
            if f[q, dim] - bounds[left, 4 + dim] > bounds[right, dim] - f[q, dim]:
                left, right = right, left
            stack[top] = right
            stack[top + 1] = left
            top += 2
            continue
        # The leaf's boxes: first a branch-free pass (SIMD) keeps those whose sides allow
        # d ≤ best_d, then the exact d of those.
        start, n = nodes[node, START], nodes[node, COUNT]
        for t in range(n):
            s = start + t
            x1, y1, x2, y2 = sf[X1, s], sf[Y1, s], sf[X2, s], sf[Y2, s]
            near[t] = (perm[s] < q) & (not iou_below(qx1, qy1, qx2, qy2, x1, x1, y1, y1, x2, x2, y2, y2, 1.0 - best_d))
        for t in range(n):
            if not near[t]:
                continue
            s = start + t
            d = _distance(
                qx1,
                qy1,
                qx2,
                qy2,
                qarea,
                qsx,
                qsy,
                qdiag,
                sf[X1, s],
                sf[Y1, s],
                sf[X2, s],
                sf[Y2, s],
                sf[AREA, s],
                sf[SX, s],
                sf[SY, s],
                sf[DIAG, s],
                weight,
            )
            if d > best_d:
                continue
            b = perm[s]
            lo, hi = min(qfirst, first[b]), max(qfirst, first[b])
            if best_b >= 0 and d == best_d and (lo > best_lo or (lo == best_lo and hi > best_hi)):
                continue
            best_d, best_lo, best_hi, best_b = d, lo, hi, b
    if best_b < 0:
        return np.inf, -1, -1, -1
    return best_d, best_lo, best_hi, best_b


@njit(**FLAGS)
def _settle(tour, size, leaf, rd, rlo, rhi):
    """Replay the tournament from ``leaf`` to the root after its record changed."""
    node = (size + leaf) // 2
    while node:
        a, b = tour[2 * node], tour[2 * node + 1]
        if b >= 0 and (
            a < 0 or rd[b] < rd[a] or (rd[b] == rd[a] and (rlo[b] < rlo[a] or (rlo[b] == rlo[a] and rhi[b] < rhi[a])))
        ):
            a = b
        tour[node] = a
        node //= 2


# fmt: off
@njit(**FLAGS)
def _merge_class(boxes, scores, m, threshold, weight, leaf_size,
                 f, first, score, count, parent, perm, slot, sf, leaf, nodes, bounds, rd, rlo, rhi, partner, tour):
    # fmt: on
    """Merge the m boxes of one class (rows of boxes/scores); returns the number of boxes made
    (m + merges). Active boxes are those with parent −1 among them."""
    stack, near = np.empty(STACK, np.int64), np.empty(leaf_size, np.bool_)  # the searches' work space
    size = 1  # leaves of the tournament: one per box that can exist
    while size < 2 * m - 1:
        size *= 2
    for k in range(m):
        set_features(f, k, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3])
        first[k], score[k], count[k], parent[k] = k, scores[k], 1, -1
    build(f, m, leaf_size, perm, leaf, nodes, bounds)
    tour[: 2 * size] = -1
    for k in range(2 * m - 1):
        rd[k] = np.inf
    # The input boxes enter the tree in order, each after the search of its row: a search then
    # meets only older boxes, the ones its row owns pairs with.
    for k in range(m):
        rd[k], rlo[k], rhi[k], partner[k] = _search(k, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight)
        tour[size + k] = k
        insert(k, f, perm, slot, sf, leaf, nodes)
    for node in range(size - 1, 0, -1):
        a, b = tour[2 * node], tour[2 * node + 1]
        if b >= 0 and (
            a < 0 or rd[b] < rd[a] or (rd[b] == rd[a] and (rlo[b] < rlo[a] or (rlo[b] == rlo[a] and rhi[b] < rhi[a])))
        ):
            a = b
        tour[node] = a
    made = m
    while True:
        w = tour[1]
        if w < 0 or rd[w] == np.inf:
            return made
        p = partner[w]
        if parent[p] >= 0:  # the partner has been merged since: search this row again
            rd[w], rlo[w], rhi[w], partner[w] = _search(w, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight)
            _settle(tour, size, w, rd, rlo, rhi)
            continue
        a, b = (w, p) if first[w] < first[p] else (p, w)
        new = made
        made += 1
        ca, cb = count[a], count[b]
        total = ca + cb
        set_features(
            f,
            new,
            (ca * f[a, X1] + cb * f[b, X1]) / total,
            (ca * f[a, Y1] + cb * f[b, Y1]) / total,
            (ca * f[a, X2] + cb * f[b, X2]) / total,
            (ca * f[a, Y2] + cb * f[b, Y2]) / total,
        )
        first[new], score[new], count[new], parent[new] = first[a], score[a] + score[b], total, -1
        parent[a] = parent[b] = new
        rd[a] = rd[b] = np.inf
        _settle(tour, size, a, rd, rlo, rhi)
        _settle(tour, size, b, rd, rlo, rhi)
        # The new box takes a's slot; b leaves the tree; both leaves' ranges are recomputed.
        leaf[new] = leaf[a]
        place(new, slot[a], f, perm, slot, sf)
        remove(b, f, perm, slot, sf, leaf, nodes, bounds)
        if leaf[new] != leaf[b]:
            refresh(leaf[new], perm, sf, nodes, bounds)
        rd[new], rlo[new], rhi[new], partner[new] = _search(
            new, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight
        )
        tour[size + new] = new
        _settle(tour, size, new, rd, rlo, rhi)


@njit(**FLAGS)
def merge_groups(boxes, scores, starts, threshold, weight, leaf_size=LEAF):
    """Greedy merge of each group of rows ``starts[g]:starts[g + 1]`` (one class each, in input
    order) of boxes: float64[N, 4] and scores: float64[N].

    Returns (boxes [K, 4], scores [K], counts [K], first [K], labels [N]): the merged boxes of
    all groups, each with the row of its first member; labels gives each row's merged box.
    """
    n = boxes.shape[0]
    largest = 1
    for g in range(len(starts) - 1):
        largest = max(largest, starts[g + 1] - starts[g])
    cap = 2 * largest - 1
    f = np.empty((cap, 8))
    first, count, parent = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)
    score, rd = np.empty(cap), np.empty(cap)
    rlo, rhi, partner = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)
    perm, sf, slot, leaf, nodes, bounds = allocate(largest, cap, leaf_size)
    tour = np.empty(4 * cap, np.int64)
    final = np.empty(cap, np.int64)
    out_boxes, out_scores = np.empty((n, 4)), np.empty(n)
    out_counts, out_first, labels = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    k = 0
    for g in range(len(starts) - 1):
        lo, m = starts[g], starts[g + 1] - starts[g]
        # fmt: off
        made = _merge_class(boxes[lo:], scores[lo:], m, threshold, weight, leaf_size,
                            f, first, score, count, parent, perm, slot, sf, leaf, nodes, bounds, rd, rlo, rhi, partner, tour)
        # fmt: on
        for b in range(made - 1, -1, -1):  # a parent is younger than its members: resolved first
            if parent[b] >= 0:
                final[b] = final[parent[b]]
                continue
            final[b] = k
            for c in range(4):
                out_boxes[k, c] = f[b, c]
            out_scores[k], out_counts[k], out_first[k] = score[b], count[b], lo + first[b]
            k += 1
        for b in range(m):
            labels[lo + b] = final[b]
    return out_boxes[:k], out_scores[:k], out_counts[:k], out_first[:k], labels
