"""Greedy merge: the fast version is identical to the literal reference."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overfeat.errors import InputError
from overfeat.runtime.merge import MergeConfig, dissimilarity, greedy_merge
from tests.reference import dissimilarity_scalar, greedy_merge_reference, merge_mismatch


def assert_same(boxes, scores, classes, config):
    fast = greedy_merge(boxes, scores, classes, config)
    ref = greedy_merge_reference(boxes, scores, classes, config.threshold, config.centre_weight)
    mismatch = merge_mismatch(fast, ref)
    assert mismatch is None, mismatch
    return fast


def random_boxes(rng, n, grid=None):
    centres = rng.normal(100, 30, (n, 2))
    sizes = rng.uniform(5, 80, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    if grid:  # coarse coordinates make exact ties between pair distances common
        boxes = np.round(boxes / grid) * grid
    return boxes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 45),
    n_classes=st.integers(1, 3),
    threshold=st.floats(0, 1.5),
    weight=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    grid=st.sampled_from([None, 5.0, 20.0]),
)
def test_equals_reference_on_random_inputs(seed, n, n_classes, threshold, weight, grid):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, grid)
    scores = rng.uniform(0, 1, n) if grid is None else np.round(rng.uniform(0, 1, n), 1)
    assert_same(boxes, scores, rng.integers(0, n_classes, n), MergeConfig(threshold, weight))


def test_dense_clusters_like_a_localization():
    """Hundreds of boxes around two objects plus scattered ones: many rounds, long prefixes."""
    rng = np.random.default_rng(7)
    n = 240
    objects = np.array([[50, 60, 210, 200], [150, 20, 260, 120]], dtype=float)
    base = objects[rng.integers(0, 2, n)]
    size = (base[:, 2:] - base[:, :2]).repeat(2, axis=0).reshape(n, 4)
    boxes = base + rng.normal(0, 0.06, (n, 4)) * size
    boxes[: n // 4] = random_boxes(rng, n // 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    merged = assert_same(boxes, rng.uniform(0, 1, n), rng.integers(0, 2, n), MergeConfig())
    assert (merged.counts >= 30).sum() == 4, "each object of each class became one big cluster"


def test_empty_and_single():
    empty = greedy_merge(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,)
    one = assert_same(np.array([[1.0, 2.0, 3.0, 5.0]]), np.array([0.5]), np.array([4]), MergeConfig())
    assert one.counts.tolist() == [1] and one.classes.tolist() == [4]


def test_exact_ties_merge_the_first_pair_in_input_order():
    # Four identical boxes: every pair has d = 0. Pair (0, 1) merges first, then (0, 2) [the
    # merged box is identical to the others], then (0, 3).
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (4, 1))
    merged = assert_same(boxes, np.array([1.0, 2.0, 4.0, 8.0]), np.zeros(4, int), MergeConfig(threshold=0.0))
    assert merged.counts.tolist() == [4] and merged.scores.tolist() == [15.0]
    # Two equally close pairs: (0, 1) and (2, 3) both at the same d; (0, 1) goes first.
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 0, 110, 10], [101, 0, 111, 10]], dtype=float)
    d01 = dissimilarity(boxes[:1], boxes[1:2], 1.0)[0, 0]
    assert d01 == dissimilarity(boxes[2:3], boxes[3:4], 1.0)[0, 0]
    merged = assert_same(boxes, np.ones(4), np.zeros(4, int), MergeConfig(threshold=d01))
    assert merged.counts.tolist() == [2, 2]


def test_pairs_exactly_on_the_threshold_merge_and_just_above_do_not():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    d = dissimilarity(boxes[:1], boxes[1:], 1.0)[0, 0]
    assert d == dissimilarity_scalar(boxes[0], boxes[1], 1.0)
    on = assert_same(boxes, np.ones(2), np.zeros(2, int), MergeConfig(threshold=d))
    assert on.counts.tolist() == [2] and on.boxes.tolist() == [[1.0, 0.0, 11.0, 10.0]]
    below = assert_same(boxes, np.ones(2), np.zeros(2, int), MergeConfig(threshold=np.nextafter(d, 0)))
    assert below.counts.tolist() == [1, 1]


def test_classes_never_merge_with_each_other():
    boxes = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    merged = assert_same(boxes, np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0]), MergeConfig())
    assert sorted(merged.counts.tolist()) == [1, 2]
    assert merged.labels.tolist() == [0, 1, 0]  # class 0 has the higher sum (0.4), so row 0


def test_degenerate_boxes():
    boxes = np.array([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 3.0]])
    assert_same(boxes, np.ones(3), np.zeros(3, int), MergeConfig(threshold=1.0))


def test_vectorised_dissimilarity_is_the_scalar_one():
    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 20), random_boxes(rng, 30, grid=5.0)
    d = dissimilarity(a, b, 0.7)
    assert d.shape == (20, 30)
    for p in range(20):
        for q in range(30):
            assert d[p, q] == dissimilarity_scalar(a[p], b[q], 0.7)
    assert np.all(np.diag(dissimilarity(a, a, 1.0)) == 0)
    assert np.array_equal(d, dissimilarity(b, a, 0.7).T)


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "message"),
    [
        (np.zeros((2, 3)), np.zeros(2), np.zeros(2, int), r"shape \[2, 3\], expected \[N, 4\]"),
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2, int), "must both be \\[2\\]"),
        (np.array([[0, 0, np.nan, 1]]), np.zeros(1), np.zeros(1, int), "finite"),
        (np.array([[5, 0, 1, 1]]), np.zeros(1), np.zeros(1, int), "x2 ≥ x1"),
        (np.zeros((1, 4)), np.zeros(1), np.zeros(1), "expected integers"),
    ],
)
def test_bad_input(boxes, scores, classes, message):
    with pytest.raises(InputError, match=message):
        greedy_merge(boxes, scores, classes)


@pytest.mark.parametrize("kwargs", [dict(threshold=-1), dict(centre_weight=float("nan")), dict(threshold="0.5")])
def test_bad_config(kwargs):
    with pytest.raises(InputError, match="MergeConfig"):
        MergeConfig(**kwargs)


def test_limits(monkeypatch):
    from overfeat.runtime import merge

    with pytest.raises(InputError, match="pixel coordinates below"):
        greedy_merge(np.array([[1e308, 0, 1.5e308, 1.0]]), np.ones(1), np.zeros(1, int))
    monkeypatch.setattr(merge, "MAX_PER_CLASS", 3)
    with pytest.raises(InputError, match=r"4 candidate boxes of class 0: merging them needs a 4² matrix"):
        greedy_merge(np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)), np.ones(4), np.zeros(4, int))
    assert len(greedy_merge(np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)), np.ones(4), np.array([0, 0, 1, 1])).boxes) == 2


def test_blocked_initial_matrix_is_the_same(monkeypatch):
    from overfeat.runtime import merge

    rng = np.random.default_rng(9)
    boxes, scores, classes = random_boxes(rng, 60), rng.uniform(0, 1, 60), rng.integers(0, 2, 60)
    whole = greedy_merge(boxes, scores, classes)
    monkeypatch.setattr(merge, "_BLOCK", 7)
    blocked = greedy_merge(boxes, scores, classes)
    assert np.array_equal(whole.boxes, blocked.boxes) and np.array_equal(whole.labels, blocked.labels)
