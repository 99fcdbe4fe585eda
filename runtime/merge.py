"""Greedy box merging (paper §4.3), exact and vectorised.

Within each class, repeatedly merge the pair of boxes with the smallest dissimilarity until the
smallest is past ``threshold``. A merged box is the member-count-weighted average of the two
boxes' coordinates (so always the mean of its original members); its score is the sum of the
two scores.

**Dissimilarity.** The paper's match score ("distance between centres plus intersection area")
cannot be taken literally: it would reward boxes that do not overlap. We use

    d(a, b) = (1 − IoU(a, b)) + centre_weight · ‖c_a − c_b‖ / ((diag_a + diag_b) / 2)

which is 0 for identical boxes, grows with the distance between centres (measured in box
diagonals, so it is scale-free) and shrinks with overlap. Two boxes of the same size shifted by
10% of their side have d ≈ 0.25; by 20%, d ≈ 0.48 (default ``threshold`` 0.5). IoU is 0 when the
union is empty; the centre term's denominator is floored at 1e-12.

**Ties.** Among pairs with equal dissimilarity the pair (i, j), i < j, that comes first in input
order merges first (smallest i, then smallest j); the merged box takes the place of box i. A
pair whose dissimilarity equals ``threshold`` still merges.

**Kernels** (:mod:`overfeat.runtime.kernels`). Two implementations give the same result, bit
for bit (both are tested against the literal loop kept in the tests as the reference).
``"compiled"`` (:mod:`overfeat.runtime.compiled.merge`, numba, the ``fast`` extra) keeps each
box's nearest older neighbour in a tournament tree and finds neighbours in a k-d tree: O(n)
memory, 25–60 times faster than NumPy on thousands of boxes (``docs/benchmarks.md``).
``"numpy"``, the fallback of the NumPy-only install, keeps each class's dissimilarity matrix and
every box's nearest neighbour; a round takes the pairs in order of their nearest-neighbour
distance, as long as they are disjoint, computes all their merged boxes at once, and keeps the
longest prefix for which no merged box is closer to anything than the next pair is (so each
kept merge is exactly the one the sequential loop would make next).
``MergeConfig(kernel="auto")`` (the default) takes the compiled kernel where numba is
installed; :attr:`Merged.kernel` says which ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from overfeat.errors import InputError

from .kernels import check_kernel, compiled, resolve_kernel

_ROUND = 512  # most merges tried in one round (NumPy kernel)
_BLOCK = 1024  # rows of the initial dissimilarity matrix computed at once (bounds temporaries)
MAX_PER_CLASS = 16384  # NumPy kernel: the per-class matrix is n² float64, 2 GiB at this size
MAX_BOXES = 1_000_000  # compiled kernel: about 0.5 KiB of working memory per box
MAX_COORDINATE = 1e12


@dataclass(frozen=True)
class MergeConfig:
    """Parameters of :func:`greedy_merge` (see the module docstring for the dissimilarity and
    the kernels)."""

    threshold: float = 0.5
    centre_weight: float = 1.0
    kernel: str = "auto"

    def __post_init__(self) -> None:
        for name in ("threshold", "centre_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise InputError(f"MergeConfig.{name} must be a finite number ≥ 0, got {value!r}")
        check_kernel(self.kernel, "MergeConfig.kernel")


@dataclass(frozen=True)
class Merged:
    """Merged boxes, sorted by score (descending), then class, then first member.

    boxes: ndarray[K, 4] (x1, y1, x2, y2); scores: ndarray[K]; classes: ndarray[K];
    counts: ndarray[K] (members per box); labels: ndarray[N], the output row of each input box;
    kernel: ``"compiled"`` or ``"numpy"``, the implementation that ran.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    labels: np.ndarray
    kernel: str = "numpy"

    def members(self, k: int) -> np.ndarray:
        """Input indices of the boxes merged into output row ``k``, ascending."""
        return np.flatnonzero(self.labels == k)


def dissimilarity(a: np.ndarray, b: np.ndarray, centre_weight: float) -> np.ndarray:
    """d(a, b) for boxes a: ndarray[A, 4] and b: ndarray[B, 4] → ndarray[A, B], float64."""
    return _pairwise(_features(a), _features(b), centre_weight)


def _features(boxes: np.ndarray) -> np.ndarray:
    """Per-box terms of d: x1, y1, x2, y2, area, x1 + x2, y1 + y2, diagonal → ndarray[N, 8]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.column_stack([boxes, w * h, boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3], np.sqrt(w * w + h * h)])


def _pairwise(fa: np.ndarray, fb: np.ndarray, centre_weight: float) -> np.ndarray:
    a = fa.T[:, :, None]
    b = fb.T[:, None, :]
    iw = np.minimum(a[2], b[2]) - np.maximum(a[0], b[0])
    ih = np.minimum(a[3], b[3]) - np.maximum(a[1], b[1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    union = (a[4] + b[4]) - inter
    positive = union > 0
    np.divide(inter, union, out=inter, where=positive)
    inter[~positive] = 0.0  # iou
    dx = np.subtract(a[5], b[5], out=union)
    dy = np.subtract(a[6], b[6], out=ih)
    np.multiply(dx, dx, out=dx)
    np.multiply(dy, dy, out=dy)
    np.add(dx, dy, out=dx)
    np.sqrt(dx, out=dx)
    np.divide(dx, np.maximum(a[7] + b[7], 1e-12), out=dx)
    if centre_weight != 1.0:
        np.multiply(dx, centre_weight, out=dx)
    np.subtract(1.0, inter, out=inter)
    return np.add(inter, dx, out=inter)


def check_boxes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert: boxes [N, 4] finite with x2 ≥ x1, y2 ≥ y1; scores [N]; classes [N] int."""
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"boxes have shape {list(boxes.shape)}, expected [N, 4]")
    n = len(boxes)
    if scores.shape != (n,) or classes.shape != (n,):
        raise InputError(f"scores {list(scores.shape)} and classes {list(classes.shape)} must both be [{n}], one per box")
    if not np.issubdtype(classes.dtype, np.integer) and n:
        raise InputError(f"classes have dtype {classes.dtype}, expected integers")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise InputError("boxes and scores must be finite, got NaN or inf")
    if n and ((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
        raise InputError("boxes must be (x1, y1, x2, y2) with x2 ≥ x1 and y2 ≥ y1")
    if n and np.abs(boxes).max() > MAX_COORDINATE:
        raise InputError(
            f"box coordinates reach {np.abs(boxes).max():.3g}, expected pixel coordinates below {MAX_COORDINATE:.0e}"
        )
    return boxes, scores, classes.astype(np.int64)


def greedy_merge(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, config: MergeConfig = MergeConfig()) -> Merged:
    """Merge boxes: ndarray[N, 4], scores: ndarray[N], classes: ndarray[N] → :class:`Merged`.

    ``config.kernel`` picks the implementation (both give the same result, bit for bit).
    """
    boxes, scores, classes = check_boxes(boxes, scores, classes)
    kernel = resolve_kernel(config.kernel)
    if kernel == "compiled":
        if len(boxes) > MAX_BOXES:
            raise InputError(
                f"{len(boxes)} candidate boxes to merge; the limit is {MAX_BOXES}. Use fewer or smaller scales, a higher score threshold, or NMS"
            )
        out = _merge_compiled(boxes, scores, classes, config)
    else:
        out = _merge_numpy(boxes, scores, classes, config)
    return _ranked(*out, kernel)


def _merge_compiled(boxes, scores, classes, config: MergeConfig):
    """(boxes, scores, classes, counts, first member, label of each input box) by the kernel."""
    if not len(boxes):
        return (
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    kernels = compiled()
    order = np.argsort(classes, kind="stable")  # each class's boxes together, in input order
    sorted_classes = classes[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_classes[1:] != sorted_classes[:-1], [True]]))
    out_boxes, out_scores, counts, first, labels = kernels.merge.merge_groups(
        np.ascontiguousarray(boxes[order]),
        np.ascontiguousarray(scores[order]),
        starts.astype(np.int64),
        float(config.threshold),
        float(config.centre_weight),
        kernels.tree.LEAF,
    )
    owner = np.empty(len(boxes), np.int64)
    owner[order] = labels
    return out_boxes, out_scores, sorted_classes[first], counts, order[first], owner


def _merge_numpy(boxes, scores, classes, config: MergeConfig):
    """The same as :func:`_merge_compiled`, in NumPy: each class's n × n dissimilarity matrix."""
    out_boxes, out_scores, out_classes, out_counts, out_first = [], [], [], [], []
    owner = np.empty(len(boxes), dtype=np.int64)  # input box → index of its cluster in the lists above
    for c in np.unique(classes):
        index = np.flatnonzero(classes == c)
        if len(index) > MAX_PER_CLASS:
            gib = len(index) ** 2 * 8 / 2**30
            raise InputError(
                f"{len(index)} candidate boxes of class {c}: the NumPy merge needs a {len(index)}² matrix ({gib:.1f} GiB); its limit is {MAX_PER_CLASS} per class. "
                "Install the compiled kernel (pip install 'overfeat[fast]'), use fewer or smaller scales, or NMS"
            )
        state = _ClassMerge(boxes[index], scores[index], config)
        state.run()
        slots = np.flatnonzero(state.active)
        base = len(out_boxes)
        position = np.full(len(index), -1)
        position[slots] = np.arange(len(slots)) + base
        owner[index] = position[state.owner]
        out_boxes.extend(state.boxes[slots])
        out_scores.extend(state.scores[slots])
        out_classes.extend([c] * len(slots))
        out_counts.extend(state.counts[slots])
        out_first.extend(index[slots])  # a cluster sits in the slot of its first member
    return (
        np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(out_scores, dtype=np.float64),
        np.asarray(out_classes, dtype=np.int64),
        np.asarray(out_counts, dtype=np.int64),
        np.asarray(out_first, dtype=np.int64),
        owner,
    )


def _ranked(boxes, scores, classes, counts, first, owner, kernel: str) -> Merged:
    """The merged boxes in :class:`Merged`'s order (score descending, class, first member)."""
    order = np.lexsort((first, classes, -scores))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return Merged(
        boxes=boxes[order], scores=scores[order], classes=classes[order], counts=counts[order], labels=rank[owner], kernel=kernel
    )


class _ClassMerge:
    """The merge of one class's boxes; slots keep input order, merged boxes take the lower slot."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, config: MergeConfig) -> None:
        n = len(boxes)
        self.boxes, self.scores = boxes.copy(), scores.copy()
        self.features = _features(boxes)
        self.counts = np.ones(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.owner = np.arange(n)
        self.weight = config.centre_weight
        self.threshold = config.threshold
        self.d = np.empty((n, n))
        for start in range(0, n, _BLOCK):
            self.d[start : start + _BLOCK] = _pairwise(self.features[start : start + _BLOCK], self.features, self.weight)
        np.fill_diagonal(self.d, np.inf)
        self.near = self.d.argmin(axis=1) if n else np.zeros(0, np.int64)  # first minimum: lowest index
        self.near_d = self.d[np.arange(n), self.near] if n else np.zeros(0)

    def run(self) -> None:
        while True:
            pairs = self._candidates()
            if not pairs:
                return
            self._apply(*self._valid_prefix(pairs))

    def _candidates(self) -> list[tuple[int, int]]:
        """Disjoint pairs in the order the sequential loop would take them if no merged box
        came closer: by (nearest distance, row), stopping at a row whose neighbour is taken."""
        rows = np.flatnonzero(self.near_d <= self.threshold)
        if not len(rows):
            return []
        rows = rows[np.lexsort((rows, self.near_d[rows]))]
        taken: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for k, p in zip(rows.tolist(), self.near[rows].tolist(), strict=True):
            if k in taken:
                continue
            if p in taken or len(pairs) == _ROUND:
                break  # this row's true nearest is unknown now: end the round here
            pairs.append((min(k, p), max(k, p)))
            taken.update((k, p))
        return pairs

    def _valid_prefix(self, pairs: list[tuple[int, int]]):
        """Merge all candidate pairs at once and keep the prefix the sequential loop agrees with.

        Step t is kept when its distance is below every distance from a box merged at an
        earlier step s < t to a box present at step t: the originals no pair touches, the
        originals of pairs t, t+1, … (still present), and the boxes merged at steps before t.
        """
        i, j = np.array(pairs).T
        dist = self.d[i, j]
        ci, cj = self.counts[i], self.counts[j]
        merged = (ci[:, None] * self.boxes[i] + cj[:, None] * self.boxes[j]) / (ci + cj)[:, None]
        features = _features(merged)
        to_all = _pairwise(features, self.features, self.weight)
        to_all[:, ~self.active] = np.inf
        among = _pairwise(features, features, self.weight)
        np.fill_diagonal(among, np.inf)
        t = len(pairs)
        if t > 1:
            later = np.minimum(to_all[:, i], to_all[:, j])
            later = np.minimum.accumulate(later[:, ::-1], axis=1)[:, ::-1]
            rest = to_all.copy()
            rest[:, i] = np.inf
            rest[:, j] = np.inf
            earlier = np.concatenate([np.full((t, 1), np.inf), np.minimum.accumulate(among, axis=1)[:, :-1]], axis=1)
            closest = np.minimum(np.minimum(later, earlier), rest.min(axis=1)[:, None])  # [s, step]
            closest[np.tril_indices(t)] = np.inf  # merged box s exists only after step s
            bad = np.flatnonzero(dist >= closest.min(axis=0))
            t = int(bad[0]) if len(bad) else t
        rows = to_all[:t]
        rows[:, j[:t]] = np.inf
        rows[:, i[:t]] = among[:t, :t]
        return i[:t], j[:t], merged[:t], features[:t], rows

    def _apply(self, i: np.ndarray, j: np.ndarray, merged: np.ndarray, features: np.ndarray, rows: np.ndarray) -> None:
        self.scores[i] = self.scores[i] + self.scores[j]
        self.counts[i] = self.counts[i] + self.counts[j]
        self.boxes[i] = merged
        self.features[i] = features
        self.active[j] = False
        remap = np.arange(len(self.owner))
        remap[j] = i
        self.owner = remap[self.owner]
        self.d[i, :] = rows
        self.d[:, i] = rows.T
        self.d[j, :] = np.inf
        self.d[:, j] = np.inf
        self.near_d[j] = np.inf
        # Rows whose nearest neighbour changed or vanished: search again. Others: compare with
        # the new boxes only (ties go to the lower index).
        touched = np.zeros(len(self.active), dtype=bool)
        touched[i] = touched[j] = True
        stale = touched[self.near] | touched
        again = np.flatnonzero(self.active & stale)
        if len(again):
            self.near[again] = self.d[again].argmin(axis=1)
            self.near_d[again] = self.d[again, self.near[again]]
        others = np.flatnonzero(self.active & ~stale)
        if len(others):
            cols = np.sort(i)
            sub = self.d[np.ix_(others, cols)]
            best = sub.argmin(axis=1)
            best_d = sub[np.arange(len(others)), best]
            best_c = cols[best]
            better = (best_d < self.near_d[others]) | ((best_d == self.near_d[others]) & (best_c < self.near[others]))
            self.near[others[better]] = best_c[better]
            self.near_d[others[better]] = best_d[better]
