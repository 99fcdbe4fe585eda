"""Greedy merge: both kernels (NumPy and compiled) are identical to the literal reference.

Every test of the merge runs once per kernel: ``numpy``, ``compiled`` (numba; skipped with its
reason where numba is absent) and ``compiled-leaf2``, the compiled kernel with leaves of two
boxes, so that small inputs exercise a deep k-d tree.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overfeat.errors import BackendError, InputError
from overfeat.runtime import kernels, merge
from overfeat.runtime.merge import MergeConfig, dissimilarity, greedy_merge
from tests.kernels import KERNELS, NO_NUMBA, clustered_boxes, leaves, random_boxes
from tests.reference import dissimilarity_scalar, greedy_merge_reference, merge_mismatch


def assert_same(boxes, scores, classes, config, kernel=("numpy", None)):
    name, leaf = kernel
    config = MergeConfig(config.threshold, config.centre_weight, kernel=name)
    with leaves(leaf):
        fast = greedy_merge(boxes, scores, classes, config)
    assert fast.kernel == name
    ref = greedy_merge_reference(boxes, scores, classes, config.threshold, config.centre_weight)
    mismatch = merge_mismatch(fast, ref)
    assert mismatch is None, mismatch
    return fast


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 45),
    n_classes=st.integers(1, 3),
    threshold=st.floats(0, 1.5),
    weight=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    grid=st.sampled_from([None, 5.0, 20.0]),
)
def test_equals_reference_on_random_inputs(kernel, seed, n, n_classes, threshold, weight, grid):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, grid)
    scores = rng.uniform(0, 1, n) if grid is None else np.round(rng.uniform(0, 1, n), 1)
    assert_same(boxes, scores, rng.integers(0, n_classes, n), MergeConfig(threshold, weight), kernel)


@pytest.mark.parametrize("kernel", KERNELS)
def test_dense_clusters_like_a_localization(kernel):
    """Hundreds of boxes around two objects plus scattered ones: many rounds, long prefixes."""
    rng = np.random.default_rng(7)
    n = 240
    objects = np.array([[50, 60, 210, 200], [150, 20, 260, 120]], dtype=float)
    base = objects[rng.integers(0, 2, n)]
    size = (base[:, 2:] - base[:, :2]).repeat(2, axis=0).reshape(n, 4)
    boxes = base + rng.normal(0, 0.06, (n, 4)) * size
    boxes[: n // 4] = random_boxes(rng, n // 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    merged = assert_same(boxes, rng.uniform(0, 1, n), rng.integers(0, 2, n), MergeConfig(), kernel)
    assert (merged.counts >= 30).sum() == 4, "each object of each class became one big cluster"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("grid", [1.0, 4.0, 16.0])
def test_dense_clusters_with_forced_ties(kernel, grid):
    """Clusters snapped to a grid: many identical boxes and many pairs at exactly equal d,
    so the order of merges rests on the tie rule throughout."""
    rng = np.random.default_rng(int(grid))
    boxes = np.round(clustered_boxes(rng, 160, noise=0.03) / grid) * grid
    scores = np.round(rng.uniform(0, 1, 160), 1)
    for threshold in (0.0, 0.2, 0.5):
        merged = assert_same(boxes, scores, rng.integers(0, 2, 160), MergeConfig(threshold), kernel)
        assert merged.counts.max() > 1


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_and_single(kernel):
    empty = greedy_merge(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), MergeConfig(kernel=kernel[0]))
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,) and empty.kernel == kernel[0]
    one = assert_same(np.array([[1.0, 2.0, 3.0, 5.0]]), np.array([0.5]), np.array([4]), MergeConfig(), kernel)
    assert one.counts.tolist() == [1] and one.classes.tolist() == [4]


@pytest.mark.parametrize("kernel", KERNELS)
def test_exact_ties_merge_the_first_pair_in_input_order(kernel):
    # Four identical boxes: every pair has d = 0. Pair (0, 1) merges first, then (0, 2) [the
    # merged box is identical to the others], then (0, 3).
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (4, 1))
    merged = assert_same(boxes, np.array([1.0, 2.0, 4.0, 8.0]), np.zeros(4, int), MergeConfig(threshold=0.0), kernel)
    assert merged.counts.tolist() == [4] and merged.scores.tolist() == [15.0]
    # Two equally close pairs: (0, 1) and (2, 3) both at the same d; (0, 1) goes first.
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 0, 110, 10], [101, 0, 111, 10]], dtype=float)
    d01 = dissimilarity(boxes[:1], boxes[1:2], 1.0)[0, 0]
    assert d01 == dissimilarity(boxes[2:3], boxes[3:4], 1.0)[0, 0]
    merged = assert_same(boxes, np.ones(4), np.zeros(4, int), MergeConfig(threshold=d01), kernel)
    assert merged.counts.tolist() == [2, 2]


@pytest.mark.parametrize("kernel", KERNELS)
def test_many_identical_boxes(kernel):
    """Identical boxes (as clipping to the image makes them): every pair at d = 0, merged in
    input order; the order of the scores shows it."""
    n = 300
    rng = np.random.default_rng(4)
    boxes = np.tile([0.0, 0.0, 640.0, 480.0], (n, 1))
    boxes[::7] = [5.0, 5.0, 600.0, 400.0]
    scores = rng.uniform(0, 1, n)
    with leaves(kernel[1]):
        merged = greedy_merge(boxes, scores, np.zeros(n, int), MergeConfig(kernel=kernel[0]))
    ref = greedy_merge_reference(boxes[:60], scores[:60], np.zeros(60, int), 0.5, 1.0)
    assert merge_mismatch(greedy_merge(boxes[:60], scores[:60], np.zeros(60, int), MergeConfig(kernel=kernel[0])), ref) is None
    assert merged.counts.tolist() == [n] and merged.labels.tolist() == [0] * n
    assert np.allclose(merged.boxes[0], boxes.mean(axis=0)) and np.isclose(merged.scores[0], scores.sum())


@pytest.mark.parametrize("kernel", KERNELS)
def test_pairs_exactly_on_the_threshold_merge_and_just_above_do_not(kernel):
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    d = dissimilarity(boxes[:1], boxes[1:], 1.0)[0, 0]
    assert d == dissimilarity_scalar(boxes[0], boxes[1], 1.0)
    on = assert_same(boxes, np.ones(2), np.zeros(2, int), MergeConfig(threshold=d), kernel)
    assert on.counts.tolist() == [2] and on.boxes.tolist() == [[1.0, 0.0, 11.0, 10.0]]
    below = assert_same(boxes, np.ones(2), np.zeros(2, int), MergeConfig(threshold=np.nextafter(d, 0)), kernel)
    assert below.counts.tolist() == [1, 1]


@pytest.mark.parametrize("kernel", KERNELS)
def test_thresholds_on_every_pair_of_a_cluster(kernel):
    """The threshold set to each pair's d in turn, and to the float just below it: which pairs
    merge changes exactly there."""
    rng = np.random.default_rng(12)
    boxes = clustered_boxes(rng, 12, objects=1, noise=0.1, scattered=0.0)
    d = dissimilarity(boxes, boxes, 1.0)[np.triu_indices(12, 1)]
    for threshold in np.sort(d)[::6]:
        for t in (threshold, np.nextafter(threshold, 0)):
            assert_same(boxes, np.ones(12), np.zeros(12, int), MergeConfig(threshold=float(t)), kernel)


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
def test_pairs_at_the_pruning_bound_are_never_pruned():
    """Thresholds equal to some pair's d, centre weight 0 (so d = 1 − IoU) and coordinates on a
    0.1 grid, which binary floats do not hold exactly: the pruning's IoU bound, computed in
    other operations than d, rounds differently, and only its margin keeps such pairs (without
    it, cases 363, 1223 and 1344 here merge differently)."""
    for seed in range(1400):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(5, 40))
        boxes = np.round(clustered_boxes(rng, n, objects=1, noise=0.08, scattered=0.0) * 10) / 10 + float(
            rng.choice([0, 0.1, 1e3 + 0.1, 7.3])
        )
        weight = float(rng.choice([0.0, 0.0, 1.0]))
        threshold = float(rng.choice(dissimilarity(boxes, boxes, weight)[np.triu_indices(n, 1)]))
        want = greedy_merge(boxes, np.ones(n), np.zeros(n, int), MergeConfig(threshold, weight, kernel="numpy"))
        with leaves(1):
            got = greedy_merge(boxes, np.ones(n), np.zeros(n, int), MergeConfig(threshold, weight, kernel="compiled"))
        assert np.array_equal(want.labels, got.labels) and np.array_equal(want.boxes, got.boxes), f"case {seed}"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("threshold", [0.0, 0.99, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("weight", [0.0, 1.0, 10.0, 100.0])
def test_extreme_thresholds_and_weights(kernel, threshold, weight):
    """Threshold 0 (only identical boxes merge), at and above 1 (boxes that do not overlap
    merge too, and the IoU prunes nothing), centre weight 0 and large."""
    rng = np.random.default_rng(int(threshold * 10 + weight))
    boxes = np.concatenate([clustered_boxes(rng, 30), np.tile([20.0, 20.0, 60.0, 60.0], (4, 1))])
    assert_same(boxes, rng.uniform(0, 1, 34), rng.integers(0, 2, 34), MergeConfig(threshold, weight), kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale", [1e-7, 1e6, 1e11])
def test_huge_and_tiny_coordinates(kernel, scale):
    """Clusters far from the origin (large coordinates, small boxes: rounding of x1 + x2 is
    large against the box) and of tiny size; the exact d decides, never the pruning's bounds."""
    rng = np.random.default_rng(int(np.log10(scale)) + 20)
    boxes = clustered_boxes(rng, 40, noise=0.05) * (scale if scale < 1 else 1.0)
    if scale > 1:
        boxes = boxes + scale
    assert_same(boxes, rng.uniform(0, 1, 40), rng.integers(0, 2, 40), MergeConfig(), kernel)


@pytest.mark.parametrize("kernel", KERNELS)
def test_classes_never_merge_with_each_other(kernel):
    boxes = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    merged = assert_same(boxes, np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0]), MergeConfig(), kernel)
    assert sorted(merged.counts.tolist()) == [1, 2]
    assert merged.labels.tolist() == [0, 1, 0]  # class 0 has the higher sum (0.4), so row 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_degenerate_boxes(kernel):
    boxes = np.array(
        [[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 4.0, 0.0], [1.0, 1.0, 2.0, 2.0]]
    )
    for threshold in (0.5, 1.0, 1.2):
        assert_same(boxes, np.ones(5), np.zeros(5, int), MergeConfig(threshold=threshold), kernel)


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
@pytest.mark.parametrize("clustered", [0.75, 0.0])
def test_compiled_equals_numpy_on_thousands_of_boxes(clustered):
    """Both kernels on 3,000 boxes of 3 classes (too many for the literal reference), bit for
    bit; the NumPy kernel is itself proven equal to the reference above."""
    rng = np.random.default_rng(int(clustered * 4))
    boxes = clustered_boxes(rng, 3000, objects=3, scattered=1 - clustered)
    scores, classes = rng.uniform(0, 1, 3000), rng.integers(0, 3, 3000)
    a = greedy_merge(boxes, scores, classes, MergeConfig(kernel="numpy"))
    for leaf in (None, 3):
        with leaves(leaf):
            b = greedy_merge(boxes, scores, classes, MergeConfig(kernel="compiled"))
        for field in ("boxes", "scores", "classes", "counts", "labels"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert len(a.boxes) < 2900 and (a.counts > 20).sum() >= (3 if clustered else 0)


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
def test_compiled_equals_numpy_on_random_sets():
    """80 sets of 20–300 boxes of 1 or 2 classes (scattered or clustered, some on a grid), thresholds 0–1.2,
    centre weights 0–3, the compiled kernel with leaves of 1 and 2 boxes (the deepest trees,
    where a pruning bound that is wrong or too tight shows first): bit for bit the NumPy merge."""
    for seed in range(80):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(20, 300))
        classes = 1 + seed % 2
        boxes = (
            clustered_boxes(rng, n, objects=int(rng.integers(1, 4)), noise=float(rng.uniform(0.02, 0.2)))
            if seed % 3
            else random_boxes(rng, n)
        )
        if seed % 4 == 0:
            boxes = np.round(boxes / 4) * 4
        scores, classes = rng.uniform(0, 1, n), rng.integers(0, classes, n)
        config = dict(
            threshold=float(rng.choice([0.0, 0.1, 0.3, 0.5, 0.8, 1.2])), centre_weight=float(rng.choice([0.0, 0.5, 1.0, 3.0]))
        )
        want = greedy_merge(boxes, scores, classes, MergeConfig(**config, kernel="numpy"))
        for leaf in (1, 2):
            with leaves(leaf):
                got = greedy_merge(boxes, scores, classes, MergeConfig(**config, kernel="compiled"))
            for field in ("boxes", "scores", "classes", "counts", "labels"):
                assert np.array_equal(getattr(want, field), getattr(got, field)), (
                    f"seed {seed}, leaf {leaf}, {config}: {field} differ"
                )


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


@pytest.mark.parametrize("kernel", KERNELS)
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
def test_bad_input(kernel, boxes, scores, classes, message):
    with pytest.raises(InputError, match=message):
        greedy_merge(boxes, scores, classes, MergeConfig(kernel=kernel[0]))


@pytest.mark.parametrize(
    "kwargs",
    [dict(threshold=-1), dict(centre_weight=float("nan")), dict(threshold="0.5"), dict(threshold=True), dict(kernel="fast")],
)
def test_bad_config(kwargs):
    with pytest.raises(InputError, match="MergeConfig"):
        MergeConfig(**kwargs)


def test_limits(monkeypatch):
    with pytest.raises(InputError, match="pixel coordinates below"):
        greedy_merge(np.array([[1e308, 0, 1.5e308, 1.0]]), np.ones(1), np.zeros(1, int))
    monkeypatch.setattr(merge, "MAX_PER_CLASS", 3)
    with pytest.raises(InputError, match=r"4 candidate boxes of class 0: the NumPy merge needs a 4² matrix"):
        greedy_merge(np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)), np.ones(4), np.zeros(4, int), MergeConfig(kernel="numpy"))
    assert (
        len(
            greedy_merge(
                np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)), np.ones(4), np.array([0, 0, 1, 1]), MergeConfig(kernel="numpy")
            ).boxes
        )
        == 2
    )
    if NO_NUMBA is None:
        monkeypatch.setattr(merge, "MAX_BOXES", 3)
        with pytest.raises(InputError, match="4 candidate boxes to merge; the limit is 3"):
            greedy_merge(np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)), np.ones(4), np.zeros(4, int), MergeConfig(kernel="compiled"))


def test_blocked_initial_matrix_is_the_same(monkeypatch):
    rng = np.random.default_rng(9)
    boxes, scores, classes = random_boxes(rng, 60), rng.uniform(0, 1, 60), rng.integers(0, 2, 60)
    config = MergeConfig(kernel="numpy")
    whole = greedy_merge(boxes, scores, classes, config)
    monkeypatch.setattr(merge, "_BLOCK", 7)
    blocked = greedy_merge(boxes, scores, classes, config)
    assert np.array_equal(whole.boxes, blocked.boxes) and np.array_equal(whole.labels, blocked.labels)


def test_kernel_choice(monkeypatch):
    boxes = np.tile([0.0, 0.0, 1.0, 1.0], (3, 1))
    auto = greedy_merge(boxes, np.ones(3), np.zeros(3, int))
    assert auto.kernel == ("numpy" if NO_NUMBA else "compiled")
    assert greedy_merge(boxes, np.ones(3), np.zeros(3, int), MergeConfig(kernel="numpy")).kernel == "numpy"
    # Where numba is not installed, auto falls back to NumPy and an explicit request says why.
    monkeypatch.setattr(kernels, "find_spec", lambda name: None)
    assert kernels.resolve_kernel("auto") == "numpy"
    with pytest.raises(
        BackendError, match=r"the compiled kernels were asked for, but numba is not installed \(pip install 'overfeat\[fast\]'\)"
    ):
        greedy_merge(boxes, np.ones(3), np.zeros(3, int), MergeConfig(kernel="compiled"))


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
def test_first_use_compiles_into_the_cache_and_says_so(tmp_path):
    """In a fresh cache the first merge compiles the kernel, announcing it on stderr (here at
    once: the notice's delay set to 0), and writes numba's cache where NUMBA_CACHE_DIR says."""
    code = (
        "import json, numpy as np\n"
        "from overfeat.runtime import kernels, merge\n"
        "kernels.COMPILE_NOTICE_AFTER = 0.0\n"
        "out = merge.greedy_merge(np.array([[0, 0, 10, 10], [1, 0, 11, 10.0]]), np.ones(2), np.zeros(2, int))\n"
        "print(json.dumps([out.kernel, out.counts.tolist()]))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["compiled", [2]]
    assert "compiling the runtime's kernels" in done.stderr
    assert list(Path(tmp_path / "cache").rglob("*.nbi")), "numba wrote no cache index"
