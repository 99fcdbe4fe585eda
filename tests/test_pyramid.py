from dataclasses import replace

import numpy as np
import pytest

from overfeat.errors import InputError
from overfeat.geometry import ACCURATE
from overfeat.runtime.pyramid import make_batch, pyramid_sizes, scales
from tests.kernels import KERNELS, NO_NUMBA
from tests.test_boxes import meta_for

META = meta_for(ACCURATE)


def test_paper_pyramid_follows_orientation():
    assert pyramid_sizes("paper", META, (480, 640)) == list(ACCURATE.pyramid)
    assert pyramid_sizes("paper", META, (640, 480)) == [(w, h) for h, w in ACCURATE.pyramid]
    assert pyramid_sizes("paper", META, (100, 100)) == list(ACCURATE.pyramid)  # small images are upscaled


def test_aspect_keeps_the_shape():
    sizes = pyramid_sizes("aspect", META, (300, 600))
    assert sizes == [(245, 490), (281, 562), (317, 634), (389, 778), (425, 850), (461, 922)]
    assert pyramid_sizes("aspect", META, (600, 300))[0] == (490, 245)


def test_counts_and_explicit_sizes():
    assert pyramid_sizes(1, META, (480, 640)) == [(317, 389)]
    assert pyramid_sizes(3, META, (480, 640)) == [(245, 245), (317, 389), (461, 569)]
    assert pyramid_sizes(6, META, (480, 640)) == list(ACCURATE.pyramid)
    assert pyramid_sizes([(300, 333)], META, (10, 10)) == [(300, 333)]
    s = scales("paper", META, (490, 245))[0]
    assert s.size == (245, 245) and s.factor == (0.5, 1.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("huge", "unknown pyramid"),
        (0, "expected 1 to 6"),
        (7, "expected 1 to 6"),
        ([(200, 300)], "below the model's 221-pixel window"),
        ([], "empty"),
        ([(1,)], "bad pyramid"),
    ],
)
def test_bad_pyramids(spec, message):
    with pytest.raises(InputError, match=message):
        pyramid_sizes(spec, META, (480, 640))


@pytest.mark.parametrize("kernel", KERNELS)
def test_batch_is_image_and_mirror_normalised(kernel):
    meta = meta_for(ACCURATE)
    image = np.random.default_rng(0).integers(0, 256, (245, 245, 3), dtype=np.uint8)
    batch = make_batch(image, (245, 245), meta, flip=True, kernel=kernel[0])
    assert batch.shape == (2, 3, 245, 245) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], image.transpose(2, 0, 1).astype(np.float32))  # mean 0, std 1, same size
    np.testing.assert_array_equal(batch[1], batch[0][:, :, ::-1])
    assert make_batch(image, (245, 245), meta, flip=False, kernel=kernel[0]).shape == (1, 3, 245, 245)


def test_aspect_ratio_is_bounded():
    assert pyramid_sizes("aspect", META, (300, 20000))[0] == (245, 980)  # 4:1 at most


@pytest.mark.parametrize("kernel", KERNELS[:2])
@pytest.mark.parametrize("seed", range(6))
def test_batches_equal_the_slow_reference(seed, kernel):
    from tests.reference import batch_reference

    rng = np.random.default_rng(seed)
    meta = replace(meta_for(ACCURATE), mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    shapes = [(1, 1), (1, 9), (7, 1), (2, 3)] if seed == 0 else [tuple(rng.integers(1, 60, 2))]
    for shape in shapes:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        for size in [(1, 1), (3, 2), tuple(rng.integers(1, 90, 2)), (shape[0] * 3, max(1, shape[1] // 3))]:
            for flip in (True, False):
                want = batch_reference(image, size, meta.mean, meta.std, flip)
                np.testing.assert_allclose(make_batch(image, size, meta, flip=flip, kernel=kernel[0]), want, rtol=0, atol=2e-5)


@pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64, np.float32])
def test_compiled_batches_are_the_numpy_ones_bit_for_bit(dtype):
    """The compiled batch against the NumPy one, exactly: enlarging, shrinking (wide filters),
    both at once, one-pixel images and targets, a non-contiguous view, every input dtype."""
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    meta = replace(meta_for(ACCURATE), mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    top = 255.0 if dtype != np.uint16 else 65535.0
    for shape, size in [
        ((240, 320), (461, 569)),
        ((600, 480), (245, 245)),
        ((37, 500), (389, 61)),
        ((1, 1), (245, 245)),
        ((9, 4), (1, 1)),
    ]:
        image = (
            rng.uniform(0, top, (*shape, 4)) if np.issubdtype(dtype, np.floating) else rng.integers(0, top + 1, (*shape, 4))
        ).astype(dtype)[:, :, :3]
        for flip in (True, False):
            want = make_batch(image, size, meta, flip, kernel="numpy")
            got = make_batch(image, size, meta, flip, kernel="compiled")
            assert got.dtype == np.float32 and np.array_equal(got, want), f"{shape} -> {size}, flip {flip}"
