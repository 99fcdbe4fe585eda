"""The greedy merge of :mod:`overfeat.runtime.merge` as a compiled kernel (numba, extra ``fast``).

Imported by ``merge.py`` only when numba is installed; it gives the same boxes, scores, counts,
members and order as the literal reference, bit for bit (the dissimilarity and the merged box
are computed with the reference's operations, in its order, without ``fastmath``).

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

**Each search is a pruned nearest-neighbour query** in a k-d tree over (x1, y1, x2, y2) built
on the class's input boxes, which enter it in order (a row's first search meets only the older
boxes). A merged box takes the tree slot of its first member, the other member leaves, and the
ranges of the two leaves and their ancestors are recomputed. A node is skipped when it holds
no box older than the query, or when no box within its coordinate ranges can come within the
best d found so far: d ≥ 1 − IoU, and the ranges bound how far a box's sides can fall short of
the query's and stick out of them, hence its IoU (:func:`_most_iou`). The bound is loosened by
1e-9, so rounding never prunes a pair at the best d and ties are always found; with a bound
≥ 1 boxes need not overlap and nothing is pruned. Once a pair at d = 0 is found (no d is below
0), a node is also skipped when all its boxes come later in input order. A leaf's boxes sit in
consecutive slots, their coordinates in columns: one branch-free pass (SIMD) applies the same
IoU test to each, then the exact d is computed for those that pass.

Memory is O(n), about 0.5 KiB per box of the largest class: no pairwise matrix.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LEAF = 64  # most boxes in a leaf of the k-d tree
_SLACK = 1e-9  # loosens the pruning bound
_STACK = 128  # a search's stack holds at most the tree's depth + 1 nodes (depth ≤ log2(n) + 1)
_FLAGS = dict(cache=True, nogil=True, error_model="numpy")

# Columns of the per-box feature array.
X1, Y1, X2, Y2, AREA, SX, SY, DIAG = range(8)
# Columns of the node table: children (-1 for a leaf), slot range, boxes present, parent, split
# dimension; the least first member of its boxes (a lower bound: boxes only leave, and a merged
# box's first member is that of a box it replaces in the same leaf); the oldest box present
# (its number; _NONE when empty), so that a search skips nodes holding no older box.
LEFT, RIGHT, START, END, COUNT, PARENT, DIM, FIRST, OLDEST = range(9)
_NONE = 2**62


@njit(**_FLAGS)
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


@njit(**_FLAGS)
def _set_features(f, k, x1, y1, x2, y2):
    """Row k of f: the box and the per-box terms of d, computed as the reference does."""
    w = x2 - x1
    h = y2 - y1
    f[k, X1], f[k, Y1], f[k, X2], f[k, Y2] = x1, y1, x2, y2
    f[k, AREA] = w * h
    f[k, SX] = x1 + x2
    f[k, SY] = y1 + y2
    f[k, DIAG] = math.sqrt(w * w + h * h)


@njit(inline="always", **_FLAGS)
def _most_iou(wq, hq, short_x, over_x, short_y, over_y):
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


@njit(inline="always", **_FLAGS)
def _far(qx1, qy1, qx2, qy2, x1_lo, x1_hi, y1_lo, y1_hi, x2_lo, x2_hi, y2_lo, y2_hi, bound):
    """True when every box b whose coordinates lie in the given ranges has d(q, b) > bound, as
    :func:`_distance` computes it (for one box, the ranges are its coordinates).

    d ≥ 1 − IoU, so IoU ≥ 1 − bound is needed; the least shortfalls and overhangs the ranges
    allow give the largest IoU (:func:`_most_iou`). Rounding moves a computed IoU by a few
    units in the last place (each gap is one subtraction, exact to a relative 2⁻⁵³), so a
    margin of 1e-9 never prunes a pair at the bound. With bound ≥ 1 boxes need not overlap and
    nothing is pruned.
    """
    if bound + _SLACK >= 1.0:
        return False
    short_x = max(x1_lo - qx1, 0.0) + max(qx2 - x2_hi, 0.0)
    over_x = max(qx1 - x1_hi, 0.0) + max(x2_lo - qx2, 0.0)
    short_y = max(y1_lo - qy1, 0.0) + max(qy2 - y2_hi, 0.0)
    over_y = max(qy1 - y1_hi, 0.0) + max(y2_lo - qy2, 0.0)
    return _most_iou(qx2 - qx1, qy2 - qy1, short_x, over_x, short_y, over_y) < 1.0 - (bound + _SLACK)


@njit(**_FLAGS)
def _grow(bounds, node, f, b):
    """Widen a node's ranges of x1, y1, x2, y2 (least in columns 0–3, greatest in 4–7) to b's."""
    for k in range(4):
        bounds[node, k] = min(bounds[node, k], f[b, k])
        bounds[node, 4 + k] = max(bounds[node, 4 + k], f[b, k])


@njit(**_FLAGS)
def _build_tree(f, m, leaf_size, perm, leaf, nodes, bounds):
    """A k-d tree over the first m boxes of f (median splits of the coordinate that varies most,
    at most ``leaf_size`` boxes a leaf), each box's leaf in ``leaf``; returns the number of
    nodes. The tree starts empty: boxes enter it with :func:`_insert`."""
    for s in range(m):
        perm[s] = s
    stack = np.empty(_STACK, np.int64)
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
            _grow(bounds, node, f, perm[s])
        nodes[node, COUNT], nodes[node, OLDEST] = 0, _NONE
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


@njit(**_FLAGS)
def _place(b, s, f, perm, slot, sf):
    """Put box b in slot s: its number in perm, its features in column s of sf."""
    perm[s], slot[b] = b, s
    for k in range(8):
        sf[k, s] = f[b, k]


@njit(**_FLAGS)
def _insert(b, f, perm, slot, sf, leaf, nodes):
    """Box b enters its leaf, after the leaf's present boxes (a leaf's boxes fill its first
    slots, so a search reads no empty slot)."""
    node = leaf[b]
    _place(b, nodes[node, START] + nodes[node, COUNT], f, perm, slot, sf)
    while node >= 0:
        nodes[node, COUNT] += 1
        nodes[node, OLDEST] = min(nodes[node, OLDEST], b)
        node = nodes[node, PARENT]


@njit(**_FLAGS)
def _replace(a, b, new, f, perm, slot, sf, leaf, nodes, bounds):
    """Box ``new`` takes a's slot; b leaves its leaf, whose last present box takes its slot."""
    leaf[new] = leaf[a]
    _place(new, slot[a], f, perm, slot, sf)
    node = leaf[b]
    last = nodes[node, START] + nodes[node, COUNT] - 1
    _place(perm[last], slot[b], f, perm, slot, sf)
    while node >= 0:
        nodes[node, COUNT] -= 1
        node = nodes[node, PARENT]
    _refresh(leaf[b], perm, sf, nodes, bounds)
    if leaf[new] != leaf[b]:
        _refresh(leaf[new], perm, sf, nodes, bounds)


@njit(**_FLAGS)
def _refresh(node, perm, sf, nodes, bounds):
    """Recompute the oldest box and the coordinate ranges of a leaf's present boxes, then of
    its ancestors from their children."""
    oldest = _NONE
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


@njit(**_FLAGS)
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
        if _far(qx1, qy1, qx2, qy2, bounds[node, X1], bounds[node, 4 + X1], bounds[node, Y1], bounds[node, 4 + Y1],
                bounds[node, X2], bounds[node, 4 + X2], bounds[node, Y2], bounds[node, 4 + Y2], best_d):
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
            near[t] = (perm[s] < q) & (not _far(qx1, qy1, qx2, qy2, x1, x1, y1, y1, x2, x2, y2, y2, best_d))
        for t in range(n):
            if not near[t]:
                continue
            s = start + t
            d = _distance(qx1, qy1, qx2, qy2, qarea, qsx, qsy, qdiag, sf[X1, s], sf[Y1, s], sf[X2, s], sf[Y2, s],
                          sf[AREA, s], sf[SX, s], sf[SY, s], sf[DIAG, s], weight)
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


@njit(**_FLAGS)
def _settle(tour, size, leaf, rd, rlo, rhi):
    """Replay the tournament from ``leaf`` to the root after its record changed."""
    node = (size + leaf) // 2
    while node:
        a, b = tour[2 * node], tour[2 * node + 1]
        if b >= 0 and (a < 0 or rd[b] < rd[a] or (rd[b] == rd[a] and (rlo[b] < rlo[a] or (rlo[b] == rlo[a] and rhi[b] < rhi[a])))):
            a = b
        tour[node] = a
        node //= 2


@njit(**_FLAGS)
def _merge_class(boxes, scores, m, threshold, weight, leaf_size, f, first, score, count, parent, perm, slot, sf, leaf, nodes, bounds,
                 rd, rlo, rhi, partner, tour):
    """Merge the m boxes of one class (rows of boxes/scores); returns the number of boxes made
    (m + merges). Active boxes are those with parent −1 among them."""
    stack, near = np.empty(_STACK, np.int64), np.empty(leaf_size, np.bool_)  # the searches' work space
    size = 1  # leaves of the tournament: one per box that can exist
    while size < 2 * m - 1:
        size *= 2
    for k in range(m):
        _set_features(f, k, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3])
        first[k], score[k], count[k], parent[k] = k, scores[k], 1, -1
    _build_tree(f, m, leaf_size, perm, leaf, nodes, bounds)
    tour[: 2 * size] = -1
    for k in range(2 * m - 1):
        rd[k] = np.inf
    # The input boxes enter the tree in order, each after the search of its row: a search then
    # meets only older boxes, the ones its row owns pairs with.
    for k in range(m):
        rd[k], rlo[k], rhi[k], partner[k] = _search(k, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight)
        tour[size + k] = k
        _insert(k, f, perm, slot, sf, leaf, nodes)
    for node in range(size - 1, 0, -1):
        a, b = tour[2 * node], tour[2 * node + 1]
        if b >= 0 and (a < 0 or rd[b] < rd[a] or (rd[b] == rd[a] and (rlo[b] < rlo[a] or (rlo[b] == rlo[a] and rhi[b] < rhi[a])))):
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
        _set_features(f, new, (ca * f[a, X1] + cb * f[b, X1]) / total, (ca * f[a, Y1] + cb * f[b, Y1]) / total,
                      (ca * f[a, X2] + cb * f[b, X2]) / total, (ca * f[a, Y2] + cb * f[b, Y2]) / total)
        first[new], score[new], count[new], parent[new] = first[a], score[a] + score[b], total, -1
        parent[a] = parent[b] = new
        rd[a] = rd[b] = np.inf
        _settle(tour, size, a, rd, rlo, rhi)
        _settle(tour, size, b, rd, rlo, rhi)
        _replace(a, b, new, f, perm, slot, sf, leaf, nodes, bounds)
        rd[new], rlo[new], rhi[new], partner[new] = _search(new, f, first, perm, sf, nodes, bounds, stack, near, threshold, weight)
        tour[size + new] = new
        _settle(tour, size, new, rd, rlo, rhi)


@njit(**_FLAGS)
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
    rlo, rhi, partner, slot = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)
    perm, leaf, sf = np.empty(largest, np.int64), np.empty(cap, np.int64), np.empty((8, largest))
    most = 2 * (largest // max(leaf_size // 2, 1) + 1) + 1  # nodes: every leaf holds at least leaf_size // 2 boxes
    nodes, bounds = np.empty((most, 9), np.int64), np.empty((most, 8))
    tour = np.empty(4 * cap, np.int64)
    final = np.empty(cap, np.int64)
    out_boxes, out_scores = np.empty((n, 4)), np.empty(n)
    out_counts, out_first, labels = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    k = 0
    for g in range(len(starts) - 1):
        lo, m = starts[g], starts[g + 1] - starts[g]
        made = _merge_class(boxes[lo:], scores[lo:], m, threshold, weight, leaf_size, f, first, score, count, parent, perm, slot, sf, leaf,
                            nodes, bounds, rd, rlo, rhi, partner, tour)
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
