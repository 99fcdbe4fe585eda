"""The shapes dataset: deterministic, labelled as drawn, readable back as COCO."""

import json

import numpy as np
import pytest

from overfeat.datasets.coco import read_coco, write_shapes
from overfeat.datasets.png import encode_png
from overfeat.datasets.shapes import CLASSES, generate, unit_shape
from overfeat.errors import InputError


def test_deterministic_and_split_dependent():
    a, b = generate(5, "single", "test", 3), generate(5, "single", "test", 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(generate(5, "single", "val", 3).boxes, a.boxes)
    assert not np.array_equal(generate(6, "single", "test", 3).boxes, a.boxes)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_samples_are_well_formed(kind):
    counts = []
    for index in range(25):
        s = generate(1, kind, "train", index)
        h, w, _ = s.image.shape
        assert s.image.dtype == np.uint8 and 240 <= h <= 600 and 240 <= w <= 600
        assert s.boxes.shape == (len(s.labels), 4) and set(s.labels.tolist()) <= set(range(len(CLASSES)))
        assert (s.boxes[:, 0] >= 0).all() and (s.boxes[:, 2] <= w).all() and (s.boxes[:, 3] <= h).all()
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
        counts.append(len(s.labels))
    if kind == "single":
        assert set(counts) == {1}
    else:
        assert min(counts) == 0 and max(counts) >= 5


def test_every_class_appears_and_sizes_vary():
    labels, sides = [], []
    for index in range(120):
        s = generate(2, "single", "train", index)
        labels.append(int(s.labels[0]))
        box = s.boxes[0]
        sides.append(max(box[2] - box[0], box[3] - box[1]) / min(s.image.shape[:2]))
    assert set(labels) == set(range(len(CLASSES)))
    assert min(sides) < 0.2 and max(sides) > 0.6


def test_unit_shapes_are_distinct_and_filled():
    q, p = np.mgrid[-1:1:101j, -1:1:101j]
    masks = {name: unit_shape(name, p, q) for name in CLASSES}
    for name, mask in masks.items():
        assert 0.15 < mask.mean() <= 1.0, name
    for a in CLASSES:
        for b in CLASSES:
            if a < b:
                assert (masks[a] != masks[b]).mean() > 0.05, (a, b)


def test_png_encoder_round_trips():
    PIL = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    import io

    assert np.array_equal(np.asarray(PIL.open(io.BytesIO(encode_png(image)))), image)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.float32))


def test_write_and_read_coco(tmp_path):
    path = write_shapes(tmp_path, "val", 6, seed=4, kind="multi")
    data = json.loads(path.read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    dataset = read_coco(path)
    assert dataset.classes == CLASSES and len(dataset.records) == 6
    for index, record in enumerate(dataset.records):
        sample = generate(4, "multi", "val", index)
        assert record.path.is_file() and (record.height, record.width) == sample.image.shape[:2]
        assert np.array_equal(record.boxes, sample.boxes) and np.array_equal(record.labels, sample.labels)


def test_bad_datasets(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_coco(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="not COCO-style: missing or malformed 'categories'"):
        read_coco(tmp_path / "bad.json")
    with pytest.raises(InputError, match="kind 'few'"):
        generate(0, "few", "test", 0)
