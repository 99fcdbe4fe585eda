"""The centred windows of ``benchmarks/window_accuracy.py``: each object whole, centred, at the
share of the window asked for, and no window over the image's edge."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "window_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("window_accuracy_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_centred_regions_frame_the_object_at_its_share(bench):
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(40, 600, 2))
        x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
        box = (x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h))
        share = float(rng.uniform(0.1, 1.2))
        region = bench.centred_region(box, share, (h, w))
        length = max(box[2] - box[0], box[3] - box[1]) / share  # the exact square's side
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if region is None:  # the exact square reaches past the image, give or take rounding
            assert not (cx - length / 2 >= 1 and cy - length / 2 >= 1 and cx + length / 2 <= w - 1 and cy + length / 2 <= h - 1)
            continue
        left, top, side = region
        assert 0 <= left and 0 <= top and left + side <= w and top + side <= h
        assert abs(side - length) <= 0.5
        assert abs(left + side / 2 - cx) <= 1 and abs(top + side / 2 - cy) <= 1
        if share <= 1:  # the whole object is inside
            assert box[0] >= left - 1 and box[1] >= top - 1 and box[2] <= left + side + 1 and box[3] <= top + side + 1


def test_an_object_too_large_for_its_share_gives_no_window(bench):
    assert bench.centred_region((10, 10, 210, 60), 0.5, (300, 300)) is None  # a 400-pixel region in a 300-pixel image
    assert bench.centred_region((100, 100, 200, 150), 0.5, (300, 300)) == (50, 25, 200)


def test_centred_accuracy_counts_the_windows_that_fit(bench):
    from overfeat.datasets.shapes import generate
    from overfeat.export import build_model

    model = build_model("accurate", 10, ("cls", "loc", "det"), 1 / 16, fine_stride=False, seed=0).eval()
    rows = bench.centred_accuracy(model, 5, 12, (0.15, 0.8))
    for share, windows, cls_right, det_right in rows:
        expected = sum(
            bench.centred_region(s.boxes[0], share, s.image.shape[:2]) is not None
            for s in (generate(5, "single", "test", i) for i in range(12))
        )
        assert windows == expected
        if windows:
            assert 0 <= cls_right <= 1 and 0 <= det_right <= 1
        else:
            assert np.isnan(cls_right) and np.isnan(det_right)
