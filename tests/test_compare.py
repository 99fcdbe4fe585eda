"""overfeat.runtime.compare: the output error statistics and the task agreement that export's parity
check, the precision gate and validate share, each against a slow, obviously right reference."""

import math

import numpy as np
import pytest

from overfeat.runtime.compare import AGREEMENT_KEYS, Agreement, ErrorStats, OutputErrors
from overfeat.runtime.results import BoxResult, ClassScore, Result


def _slow_stats(pairs):
    """Element by element, in Python floats."""
    diffs, refs = [], []
    for x, y in pairs:
        for a, b in zip(np.asarray(x, np.float64).ravel().tolist(), np.asarray(y, np.float64).ravel().tolist(), strict=True):
            diffs.append(abs(a - b))
            refs.append(abs(a))
    max_abs, scale = max(diffs), max(refs)
    return {"max_abs": max_abs, "mean_abs": sum(diffs) / len(diffs), "relative": max_abs / max(scale, 1e-12)}, scale


def _pairs(rng, dtype, count):
    """Reference and candidate maps of several shapes, as the scales of a pyramid give them."""
    out = []
    for _ in range(count):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 7)))
        x = (rng.standard_normal(shape) * rng.uniform(0.1, 10)).astype(dtype)
        out.append((x, (x + rng.standard_normal(shape) * 1e-2).astype(dtype)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("count", [1, 2, 7])
def test_error_stats_against_the_slow_reference(dtype, count):
    rng = np.random.default_rng(count * 10 + np.dtype(dtype).itemsize)
    pairs = _pairs(rng, dtype, count)
    stats = ErrorStats.of(pairs)
    expected, scale = _slow_stats(pairs)
    got = stats.to_dict()
    assert list(got) == ["max_abs", "mean_abs", "relative"]
    assert got["max_abs"] == expected["max_abs"] and stats.scale == scale  # maxima are exact
    assert got["relative"] == expected["relative"]
    assert math.isclose(got["mean_abs"], expected["mean_abs"], rel_tol=1e-12)
    assert stats.count == sum(x.size for x, _ in pairs)


def test_error_stats_on_its_edges():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    same = ErrorStats.of([(x, x.copy())])
    assert same.to_dict() == {"max_abs": 0.0, "mean_abs": 0.0, "relative": 0.0}
    zero = ErrorStats.of([(np.zeros((1, 2, 3, 3), np.float32), np.full((1, 2, 3, 3), 1e-3, np.float32))])
    assert zero.scale == 0.0 and zero.relative == zero.max_abs / 1e-12  # the scale is kept from zero
    # the sign of the difference does not matter; the reference alone sets the scale
    a, b = ErrorStats.of([(x, -x)]), ErrorStats.of([(-x, x)])
    assert a.to_dict() == b.to_dict() and a.scale == float(np.abs(x).max())
    swapped = ErrorStats.of([(2 * x, x)])
    assert swapped.scale == 2 * float(np.abs(x).max())


def test_error_stats_keep_a_nan_of_the_first_pair():
    x = np.random.default_rng(6).standard_normal((1, 2, 3, 3)).astype(np.float32)
    y = x.copy()
    y[0, 0, 0, 0] = np.nan
    assert math.isnan(ErrorStats.of([(x, y)]).max_abs)  # export's parity check must not pass a NaN output


def test_output_errors_per_name_in_the_references_order():
    rng = np.random.default_rng(7)
    maps = []
    for _ in range(3):
        ref = {
            "scores": rng.standard_normal((2, 5, 3, 4)).astype(np.float32),
            "boxes": rng.standard_normal((2, 4, 3, 4)).astype(np.float32),
        }
        maps.append((ref, {k: (v + rng.standard_normal(v.shape) * 0.1).astype(np.float32) for k, v in ref.items()}))
    errors = OutputErrors()
    for ref, cand in maps:
        errors.add(ref, cand)
    assert list(errors.to_dict()) == ["scores", "boxes"]
    for name in ("scores", "boxes"):
        assert errors.to_dict()[name] == ErrorStats.of([(r[name], c[name]) for r, c in maps]).to_dict()
    named = OutputErrors(["boxes"])
    for ref, cand in maps:
        named.add(ref, cand)
    assert list(named.to_dict()) == ["boxes"] and named["boxes"].to_dict() == errors["boxes"].to_dict()


def _slow_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _slow_agreement(pairs):
    """The measures as their definitions read, one image at a time."""
    values = {k: [] for k in AGREEMENT_KEYS}
    for r, c in pairs:
        a, b = [x.label for x in r["classify"].classes], [x.label for x in c["classify"].classes]
        values["top1"].append(1.0 if a and b and a[0] == b[0] else 0.0)
        values["top5_overlap"].append(len([x for x in set(a) if x in b]) / max(1, len(a)))
        ra, rb = r["localize"].boxes, c["localize"].boxes
        if ra:
            values["localize_iou"].append(_slow_iou(ra[0].box, rb[0].box) if rb and ra[0].label == rb[0].label else 0.0)
        for box in r["detect"].boxes[:20]:
            best = max([_slow_iou(box.box, x.box) for x in c["detect"].boxes if x.label == box.label], default=0.0)
            values["detect_recall"].append(1.0 if best >= 0.5 else 0.0)
            values["detect_iou"].append(best)
    return {k: sum(v) / len(v) for k, v in values.items() if v}


def _results(rng, boxes: int):
    def box():
        x1, y1 = rng.uniform(0, 100, 2)
        w, h = rng.uniform(1, 60, 2)
        return BoxResult(int(rng.integers(0, 3)), "", 1.0, (float(x1), float(y1), float(x1 + w), float(y1 + h)))

    def result(task, **kw):
        return Result(task, None, (200, 200), ((221, 221),), False, **kw)

    classes = tuple(ClassScore(int(k), "", 1.0) for k in rng.permutation(8)[:5])
    return {
        "classify": result("classify", classes=classes),
        "localize": result("localize", boxes=tuple(box() for _ in range(int(rng.integers(0, 3))))),
        "detect": result("detect", boxes=tuple(box() for _ in range(boxes))),
    }


@pytest.mark.parametrize("seed", range(4))
def test_agreement_against_the_slow_reference(seed):
    rng = np.random.default_rng(seed)
    pairs = [(_results(rng, int(rng.integers(0, 25))), _results(rng, int(rng.integers(0, 25)))) for _ in range(6)]
    pairs.append((pairs[0][0], pairs[0][0]))  # a candidate that agrees exactly
    agreement = Agreement()
    for r, c in pairs:
        agreement.add(r, c)
    got, expected = agreement.to_dict(), _slow_agreement(pairs)
    assert list(got) == [k for k in AGREEMENT_KEYS if k in expected]
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-12), key


def test_agreement_on_its_thresholds():
    """A detection matched at IoU exactly 0.5 is reproduced; the top localize box of another class scores 0."""
    square = (0.0, 0.0, 10.0, 10.0)
    half = (0.0, 0.0, 10.0, 5.0)  # IoU with the square: 50 / 100 = 0.5
    far = (50.0, 50.0, 60.0, 60.0)

    def results(label, box, detections):
        def result(task, **kw):
            return Result(task, None, (100, 100), ((221, 221),), False, **kw)

        return {
            "localize": result("localize", boxes=(BoxResult(label, "", 1.0, box),)),
            "detect": result("detect", boxes=tuple(BoxResult(k, "", 1.0, b) for k, b in detections)),
        }

    agreement = Agreement()
    agreement.add(results(1, square, [(1, square), (2, square)]), results(2, square, [(1, half), (2, far)]))
    got = agreement.to_dict()
    assert got == {"localize_iou": 0.0, "detect_recall": 0.5, "detect_iou": 0.25}
    assert Agreement().to_dict() == {}  # nothing measured: no keys
