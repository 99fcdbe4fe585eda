"""Pictures of results: which boxes are drawn (:func:`shown`) and that exactly those are."""

import numpy as np
import pytest

from overfeat.errors import InputError
from overfeat.runtime.draw import draw, shown
from overfeat.runtime.results import BoxResult, Result

pytest.importorskip("PIL")


def _box(label, score, box):
    return BoxResult(label, f"class{label}", float(score), tuple(float(v) for v in box), 3)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _shown_reference(boxes, floor, overlap, max_boxes):
    """The rule spelt out: rank order, score floor against the best, no large overlap with a box kept."""
    kept = []
    for b in boxes:
        if (
            len(kept) < max_boxes
            and b.score >= floor * boxes[0].score
            and (overlap >= 1 or all(_iou(b.box, k.box) < overlap for k in kept))
        ):
            kept.append(b)
    return kept


def test_weak_and_covered_boxes_are_left_out():
    boxes = [
        _box(8, 800, (30, 0, 210, 165)),  # confident
        _box(5, 100, (40, 10, 215, 170)),  # another class over the same object
        _box(6, 53, (140, 260, 270, 375)),  # a second object
        _box(8, 45, (60, 60, 120, 120)),  # a partial cluster inside the first, IoU < 0.5
        _box(2, 4.2, (0, 220, 60, 250)),  # weak: below 5% of 800
    ]
    assert [b.score for b in shown(boxes)] == [800, 53, 45]
    assert [b.score for b in shown(boxes, floor=0.0)] == [800, 53, 45, 4.2]
    assert [b.score for b in shown(boxes, overlap=1.0)] == [800, 100, 53, 45]
    assert [b.score for b in shown(boxes, overlap=0.1)] == [800, 53]
    assert shown(boxes, floor=0, overlap=1, max_boxes=2) == boxes[:2]
    assert shown([]) == []


def test_the_rules_at_their_boundaries():
    best, at_floor, below = _box(0, 800, (0, 0, 10, 10)), _box(1, 200, (50, 50, 60, 60)), _box(1, 199.99, (80, 80, 90, 90))
    assert shown([best, at_floor, below], floor=0.25) == [best, at_floor], "a score of exactly floor × best is drawn"
    half = _box(1, 100, (0, 0, 10, 20))  # IoU with best exactly 0.5
    assert shown([best, half], overlap=0.5) == [best] and shown([best, half], overlap=0.6) == [best, half]
    twin = _box(2, 700, best.box)
    assert shown([best, twin], overlap=1.0) == [best, twin], "overlap 1 keeps even identical boxes"
    negative = [_box(0, 0.0, (0, 0, 5, 5)), _box(1, -3.0, (10, 10, 20, 20))]
    assert shown(negative, floor=0.5) == negative, "no floor without a positive best score"


def test_shown_equals_the_rule_on_random_boxes():
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(0, 40))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(0, 120, (n, 2)) * (rng.random((n, 1)) > 0.05)  # some empty boxes
        scores = np.sort(rng.choice([rng.uniform(0, 1000), 5.0], n) * rng.random(n))[::-1]
        boxes = [_box(int(rng.integers(3)), s, (*p, *(p + q))) for s, p, q in zip(scores, xy, wh, strict=True)]
        floor, overlap, most = float(rng.choice([0, 0.05, 0.3])), float(rng.choice([0.2, 0.5, 1.0])), int(rng.integers(1, 25))
        assert shown(boxes, floor, overlap, most) == _shown_reference(boxes, floor, overlap, most), trial


@pytest.mark.parametrize(
    "kwargs", [{"floor": -0.1}, {"floor": 1.5}, {"overlap": float("nan")}, {"overlap": True}, {"max_boxes": 0}]
)
def test_bad_drawing_options(kwargs):
    with pytest.raises(InputError, match="must be"):
        shown([_box(0, 1, (0, 0, 5, 5))], **kwargs)


def test_the_picture_holds_the_shown_boxes_and_says_how_many(tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    from overfeat.runtime.draw import _label

    image = np.full((200, 260, 3), 90, np.uint8)
    boxes = (
        _box(0, 900, (20, 20, 120, 120)),
        _box(1, 300, (25, 25, 125, 118)),
        _box(2, 200, (150, 100, 240, 180)),
        _box(0, 2, (200, 10, 240, 40)),
    )
    result = Result("detect", None, (200, 260), ((245, 316),), True, (), boxes, {})
    picture = Image.open(draw(image, result, tmp_path / "default.png"))
    assert [b.score for b in shown(boxes)] == [900, 200]
    # expected: the shown boxes alone (nothing left out, so no caption), then the caption
    only = Result("detect", None, (200, 260), ((245, 316),), True, (), tuple(shown(boxes)), {})
    expected = Image.open(draw(image, only, tmp_path / "only.png")).convert("RGB")
    _label(ImageDraw.Draw(expected), (4, 200 - 12 - 6), "2 of 4 boxes shown", (40, 40, 40), ImageFont.load_default(12))
    assert np.array_equal(np.asarray(picture), np.asarray(expected))
    everything = np.asarray(Image.open(draw(image, result, tmp_path / "all.png", floor=0, overlap=1)))
    assert (everything[178:, :140] == 90).all(), "no caption when every box is drawn"
    assert not (everything[10:40, 200:240] == 90).all(), "the weak box is drawn when asked for"


def test_infer_passes_the_drawing_options_on(small_onnx, tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    from overfeat.runtime.image import load_image

    path, _ = small_onnx
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (260, 300, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    pictures = {}
    for name, options in (("default", []), ("all", ["--draw-floor", "0", "--draw-overlap", "1"])):
        out = tmp_path / name
        out.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "overfeat.cli",
                "infer",
                str(tmp_path / "noise.png"),
                "--model",
                str(path),
                "--task",
                "detect",
                "--score-threshold",
                "0.05",
                "--json",
                str(out / "r.json"),
                "--draw",
                str(out),
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        r = json.loads((out / "r.json").read_text())["results"][0]
        boxes = tuple(BoxResult(b["label"], b["name"], b["score"], tuple(b["box"]), b["members"]) for b in r["boxes"])
        result = Result("detect", None, (r["height"], r["width"]), tuple(map(tuple, r["scales"])), r["flip"], (), boxes, {})
        kwargs = {"floor": 0.0, "overlap": 1.0} if options else {}
        drawn = np.asarray(Image.open(draw(load_image(tmp_path / "noise.png"), result, tmp_path / f"{name}.png", **kwargs)))
        pictures[name] = np.asarray(Image.open(out / "001_noise.png"))
        assert np.array_equal(pictures[name], drawn), name
    assert len(shown(boxes)) < min(len(boxes), 20), "the random model gives boxes the defaults leave out"
    assert not np.array_equal(pictures["default"], pictures["all"])
