"""What the tests of the post-processing kernels share: the kernels to run each test with and
box sets that look like a localization's."""

from contextlib import contextmanager

import numpy as np
import pytest

from overfeat.runtime.kernels import compiled_unavailable

NO_NUMBA = compiled_unavailable()
KERNELS = [
    pytest.param(("numpy", None), id="numpy"),
    pytest.param(
        ("compiled", None), id="compiled", marks=pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}")
    ),
    pytest.param(
        ("compiled", 2),
        id="compiled-leaf2",
        marks=pytest.mark.skipif(NO_NUMBA is not None, reason=f"compiled kernels: {NO_NUMBA}"),
    ),
]


@contextmanager
def leaves(size):
    """The compiled kernels' leaf size set to ``size`` (None: their default) for the block."""
    if size is None:
        yield
        return
    from overfeat.runtime.compiled import tree

    default = tree.LEAF
    tree.LEAF = size
    try:
        yield
    finally:
        tree.LEAF = default


def random_boxes(rng, n, grid=None):
    centres = rng.normal(100, 30, (n, 2))
    sizes = rng.uniform(5, 80, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    if grid:  # coarse coordinates make exact ties between pair distances common
        boxes = np.round(boxes / grid) * grid
    return boxes


def clustered_boxes(rng, n, objects=2, noise=0.06, scattered=0.25):
    """Boxes around a few objects, as a localization gives, plus scattered ones."""
    centres = rng.uniform(60, 240, (objects, 2))
    sizes = rng.uniform(40, 160, (objects, 2))
    pick = rng.integers(0, objects, n)
    c = centres[pick] + rng.normal(0, noise, (n, 2)) * sizes[pick]
    wh = sizes[pick] * np.exp(rng.normal(0, noise, (n, 2)))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    k = int(n * scattered)
    boxes[:k] = random_boxes(rng, k)
    return boxes
