"""Box decoding in closed form, IoU and NMS against literal references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat.errors import InputError
from overfeat.geometry import ACCURATE, FAST, spatial_ops
from overfeat.metadata import ModelMeta
from overfeat.runtime.boxes import decode_at, decode_boxes, iou, nms, nms_clusters, nms_vote, suppress, window_origins
from overfeat.runtime.pyramid import Scale
from tests.kernels import KERNELS, NO_NUMBA, clustered_boxes, leaves
from tests.reference import nms_reference, nms_vote_reference


def meta_for(spec, fine=True):
    return ModelMeta(
        arch=spec.name,
        window=spec.window,
        stride=spec.stride(fine),
        fine_stride=fine,
        geometry=spatial_ops(spec, fine),
        heads=("cls", "loc"),
        classes=("a", "b"),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        pyramid=spec.pyramid,
        box_per_class=True,
    )


def encode(box, meta, scale, map_size, flipped):
    """The regressor target of DESIGN.md, written forwards: original box → resized (→ mirrored)
    → relative to each window origin, divided by the window."""
    fy, fx = scale.factor
    x1, y1, x2, y2 = box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy
    if flipped:
        x1, x2 = scale.size[1] - x2, scale.size[1] - x1
    x0, y0 = window_origins(map_size, meta.stride)
    S = meta.window
    return np.stack([(x1 - x0) / S, (y1 - y0) / S, (x2 - x0) / S, (y2 - y0) / S])


@pytest.mark.parametrize("spec", [ACCURATE, FAST])
@pytest.mark.parametrize("flipped", [False, True])
def test_decoding_inverts_the_encoding_at_every_scale(spec, flipped):
    meta = meta_for(spec)
    rng = np.random.default_rng(1)
    image_h, image_w = 375, 500
    for size in spec.pyramid:
        scale = Scale(size, (size[0] / image_h, size[1] / image_w), (image_h, image_w))
        x1, y1 = rng.uniform(0, 200, 2)
        box = np.array([x1, y1, x1 + rng.uniform(20, 280), y1 + rng.uniform(20, 160)])
        map_size = meta.map_size(size)
        decoded = decode_boxes(encode(box, meta, scale, map_size, flipped), meta, scale, flipped)
        assert decoded.shape == (*map_size, 4)
        np.testing.assert_allclose(decoded.reshape(-1, 4), np.tile(box, (map_size[0] * map_size[1], 1)), rtol=0, atol=1e-9)


@pytest.mark.parametrize("per_class", [True, False])
def test_decoding_chosen_locations_is_decoding_the_maps(per_class):
    """decode_at, which the runtime uses, equals decode_boxes on the whole maps at every
    location of both batches and every class, bit for bit (swapped corners, clipping, mirror)."""
    from dataclasses import replace

    meta = replace(meta_for(ACCURATE), box_per_class=per_class)
    rng = np.random.default_rng(5)
    for size, image in (((245, 245), (300, 280)), ((281, 317), (480, 640)), ((389, 461), (200, 150))):
        scale = Scale(size, (size[0] / image[0], size[1] / image[1]), image)
        h, w = meta.map_size(size)
        regressor = rng.normal(0.3, 0.6, (2, 4 * len(meta.classes) if per_class else 4, h, w)).astype(np.float32)
        batch, label, row, column = (
            a.ravel() for a in np.meshgrid(np.arange(2), np.arange(len(meta.classes)), np.arange(h), np.arange(w), indexing="ij")
        )
        got = decode_at(regressor, batch, label, row, column, meta, scale)
        for b in range(2):
            for c in range(len(meta.classes)):
                maps = regressor[b, 4 * c : 4 * c + 4] if per_class else regressor[b, :4]
                want = decode_boxes(maps, meta, scale, flipped=b == 1).reshape(-1, 4)
                assert np.array_equal(got[(batch == b) & (label == c)], want)


def test_window_geometry_by_hand():
    meta = meta_for(ACCURATE)
    scale = Scale((245, 245), (1.0, 1.0), (245, 245))
    encoded = np.zeros((4, 3, 3))
    encoded[2:] = 1.0  # each box is exactly its window
    decoded = decode_boxes(encoded, meta, scale, flipped=False)
    assert decoded[0, 0].tolist() == [0, 0, 221, 221]
    assert decoded[2, 1].tolist() == [12, 24, 233, 245]
    mirrored = decode_boxes(encoded, meta, scale, flipped=True)
    assert mirrored[0, 0].tolist() == [24, 0, 245, 221]  # the mirror's first window is the image's last


def test_swapped_corners_are_ordered_and_boxes_clipped():
    meta = meta_for(ACCURATE)
    scale = Scale((245, 245), (0.5, 0.5), (490, 490))
    encoded = np.zeros((4, 3, 3))
    encoded[0], encoded[2] = 0.8, 0.2  # x1 > x2
    encoded[1], encoded[3] = -1.0, 3.0  # far outside
    decoded = decode_boxes(encoded, meta, scale, flipped=False)
    assert (decoded[..., 2] >= decoded[..., 0]).all()
    assert decoded[..., 1].min() == 0 and decoded[..., 3].max() == 490


def _random_boxes(seed: int, n: int, grid: bool) -> tuple[np.ndarray, np.ndarray]:
    """n random boxes and scores; on a grid: equal scores, IoU exactly at a threshold, boxes
    without area and scores of 0."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (n, 2))], axis=1)
    scores = rng.uniform(0, 1, n)
    if grid:
        boxes, scores = np.round(boxes / 10) * 10, np.round(scores * 2) / 4
    return boxes, scores


_NMS_CASES = given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40), threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), grid=st.booleans()
)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=100, deadline=None)
@_NMS_CASES
def test_nms_equals_reference(kernel, seed, n, threshold, grid):
    boxes, scores = _random_boxes(seed, n, grid)
    with leaves(kernel[1]):
        assert nms(boxes, scores, threshold, kernel[0]).tolist() == nms_reference(boxes.tolist(), scores.tolist(), threshold)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=100, deadline=None)
@_NMS_CASES
def test_nms_vote_equals_reference(kernel, seed, n, threshold, grid):
    boxes, scores = _random_boxes(seed, n, grid)
    with leaves(kernel[1]):
        got_boxes, got_scores, got_counts = nms_vote(boxes, scores, threshold, kernel[0])
        clusters = nms_clusters(boxes, scores, threshold, kernel[0])  # a partition of the boxes, in nms's order
    expected = nms_vote_reference(boxes.tolist(), scores.tolist(), threshold)
    assert got_counts.tolist() == [n for _, _, n in expected]
    assert got_counts.sum() == n and len(got_scores) == len(nms(boxes, scores, threshold))
    assert sorted(i for c in clusters for i in c.tolist()) == list(range(n))
    assert [int(c[0]) for c in clusters] == nms_reference(boxes.tolist(), scores.tolist(), threshold)
    np.testing.assert_allclose(got_scores, [s for _, s, _ in expected], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_boxes, np.asarray([b for b, _, _ in expected]).reshape(-1, 4), rtol=1e-12, atol=1e-9)


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.3, 0.5, 0.9, 1.0])
def test_compiled_suppression_equals_numpy(threshold):
    """Clusters of every box, several classes at once, and their votes: the compiled kernel (at
    its own leaf size and with leaves of one box) gives the NumPy kernel's, bit for bit, on
    clustered, scattered and grid-snapped sets, scores with ties among them."""
    for seed in range(24):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 400))
        boxes = clustered_boxes(rng, n, objects=3) if seed % 2 else _random_boxes(seed, n, seed % 3 == 0)[0]
        if seed % 4 == 0:
            boxes = np.round(boxes / 5) * 5
        scores = np.round(rng.uniform(0, 1, n), 1 + seed % 3)
        classes = rng.integers(0, 1 + seed % 4, n)
        want = suppress(boxes, scores, classes, threshold, "numpy")
        for leaf in (None, 1):
            with leaves(leaf):
                assert np.array_equal(suppress(boxes, scores, classes, threshold, "compiled"), want), f"case {seed}, leaf {leaf}"
        in_class = classes == classes[0]
        numpy_vote = nms_vote(boxes[in_class], scores[in_class], threshold, "numpy")
        compiled_vote = nms_vote(boxes[in_class], scores[in_class], threshold, "compiled")
        assert all(np.array_equal(a, b) for a, b in zip(numpy_vote, compiled_vote, strict=True)), f"case {seed}"
        founders = np.unique(want)
        assert (want[founders] == founders).all() and (classes[want] == classes).all(), (
            "a founder heads its own cluster, of its class"
        )


def test_suppress_refuses_bad_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=float)
    for classes in (np.array([0]), np.array([0.0, 1.0])):
        with pytest.raises(InputError, match="nms needs one integer class per box"):
            suppress(boxes, np.ones(2), classes, 0.5)


def test_nms_vote_by_hand_and_bad_scores():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 20]], dtype=float)
    got_boxes, got_scores, got_counts = nms_vote(boxes, np.array([0.6, 0.2, 0.5, 0.4]), 0.5)
    # IoU of the first box with the second 90/110, with the last exactly 0.5: not suppressed
    assert got_counts.tolist() == [2, 1, 1]
    np.testing.assert_allclose(got_scores, [0.8, 0.5, 0.4])
    np.testing.assert_allclose(got_boxes, [[0.25, 0, 10.25, 10], [50, 50, 60, 60], [0, 0, 10, 20]])
    assert nms_vote(np.zeros((0, 4)), np.zeros(0), 0.5)[0].shape == (0, 4)
    for scores in ([0.6, -0.1, 0.5, 0.4], [0.6, np.nan, 0.5, 0.4], [0.6, np.inf, 0.5, 0.4], [0.6], [[0.6], [0.2], [0.5], [0.4]]):
        with pytest.raises(InputError, match="nms_vote needs one finite score ≥ 0 per box"):
            nms_vote(boxes, np.array(scores), 0.5)
    for scores in ([0.6, np.nan, 0.5, 0.4], [0.6, 0.2]):
        with pytest.raises(InputError, match="nms needs one finite score per box"):
            nms(boxes, np.array(scores), 0.5)
    for threshold in (np.nan, None, True):
        with pytest.raises(InputError, match="IoU threshold must be a finite number"):
            nms_vote(boxes, np.array([0.6, 0.2, 0.5, 0.4]), threshold)
        with pytest.raises(InputError, match="IoU threshold must be a finite number"):
            nms(boxes, np.array([0.6, 0.2, 0.5, 0.4]), threshold)


def test_iou_shapes_and_edges():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    m = iou(a, b)
    assert m.shape == (2, 3)
    assert m[0].tolist() == [50 / 150, 0.0, 1.0]
    assert m[1].tolist() == [0.0, 0.0, 0.0]
    assert iou(np.zeros((0, 4)), b).shape == (0, 3)
