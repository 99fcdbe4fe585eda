"""Ground truth is untrusted input: COCO files are checked when read, their images before an evaluation."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from overfeat.datasets import coco
from overfeat.datasets.coco import check_images, read_coco, write_shapes
from overfeat.errors import InputError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A generated split of 3 single-object images: (its JSON's path, the JSON as loaded)."""
    path = write_shapes(tmp_path_factory.mktemp("shapes"), "val", 3, seed=7)
    return path, json.loads(path.read_text())


def _refused(path, data) -> str:
    """The one-line message read_coco refuses ``data`` with (written as JSON beside the images)."""
    bad = path.parent / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_coco(bad)
    message = str(info.value)
    assert "\n" not in message
    return message


def _set(section, index, key, value):
    def change(data):
        data[section][index][key] = value

    return change


def _box(index, position, value):
    def change(data):
        data["annotations"][index]["bbox"][position] = value

    return change


def _box_to(index, edge, beyond):
    """Annotation ``index``'s box moved to reach ``beyond`` pixels past its image's ``edge``."""

    def change(data):
        ann = data["annotations"][index]
        image = next(img for img in data["images"] if img["id"] == ann["image_id"])
        x, y, w, h = ann["bbox"]
        ann["bbox"] = {
            "left": [-beyond, y, w, h],
            "top": [x, -beyond, w, h],
            "right": [image["width"] + beyond - w, y, w, h],
            "bottom": [x, image["height"] + beyond - h, w, h],
        }[edge]

    return change


BAD = {
    "NaN x": (_box(0, 0, math.nan), "annotation #0 (id 1) of image 1 (val/000000.png): bbox [nan,", "finite"),
    "infinite height": (_box(1, 3, math.inf), "annotation #1 (id 2) of image 2 (val/000001.png)", "finite"),
    "negative width": (_box(0, 2, -4.0), "has width -4", "expected both positive"),
    "zero height": (_box(2, 3, 0), "annotation #2 (id 3) of image 3 (val/000002.png)", "expected both positive"),
    "left of the image": (_box_to(0, "left", 1.5), "spans x -1.5..", "within 1 pixel"),
    "below the image": (_box_to(1, "bottom", 1.25), "of image 2 (val/000001.png)", "within 1 pixel"),
    "past the right edge": (_box_to(2, "right", 40), "of image 3", "inside the image's"),
    "three numbers": (_set("annotations", 0, "bbox", [1, 2, 3]), "bbox [1, 2, 3]", "expected 4 numbers"),
    "text in a box": (_box(0, 1, "12"), "bbox [", "expected 4 numbers"),
    "a boolean in a box": (_box(0, 1, True), "bbox [", "expected 4 numbers"),
    "unknown image": (_set("annotations", 1, "image_id", 99), "annotation #1 (id 2) of image id 99", "image_id 99 is unknown"),
    "image id as text": (_set("annotations", 1, "image_id", "2"), "of image id '2'", "is unknown"),
    "unknown category": (_set("annotations", 2, "category_id", 11), "category_id 11 is unknown", "ids of categories"),
    "odd iscrowd": (_set("annotations", 0, "iscrowd", 2), "iscrowd 2", "expected 0 or 1"),
    "repeated image id": (_set("images", 2, "id", 1), "image #2 (id 1, 'val/000002.png')", "expected unique ids"),
    "width as text": (_set("images", 0, "width", "640"), "image #0 (id 1, 'val/000000.png'): width '640'", "integers 1..65535"),
    "zero height image": (_set("images", 1, "height", 0), "height 0", "integers 1..65535"),
    "fractional width": (_set("images", 1, "width", 300.5), "width 300.5", "integers 1..65535"),
    "huge width": (_set("images", 1, "width", 70_000), "width 70000", "integers 1..65535"),
    "no file name": (_set("images", 2, "file_name", None), "image #2 (id 3, None): file_name is null", "non-empty path"),
    "image id as text in images": (_set("images", 0, "id", "1"), "image #0 (id '1'", "expected an integer"),
    "repeated category id": (_set("categories", 1, "id", 1), "category #1 (id 1) (square)", "expected each once"),
    "category without a name": (_set("categories", 0, "name", ""), "category #0 (id 1): name is ''", "non-empty string"),
    "annotation not an object": (
        lambda d: d["annotations"].__setitem__(0, [1, 2]),
        "annotation #0 is a list",
        "expected an object",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_ground_truth_is_refused_naming_the_entry(shapes, case):
    path, data = shapes
    change, where, expected = BAD[case]
    data = copy.deepcopy(data)
    change(data)
    message = _refused(path, data)
    assert message.startswith(f"dataset {path.parent / 'bad.json'} has bad ground truth (")
    assert where in message and expected in message


@pytest.mark.parametrize(
    "edge, beyond, accepted",
    [
        ("left", 1.0, True),
        ("left", 1.01, False),
        ("top", 1.0, True),
        ("right", 1.0, True),
        ("right", 1.01, False),
        ("bottom", 1.01, False),
    ],
)
def test_boxes_may_reach_one_pixel_past_the_edge(shapes, edge, beyond, accepted, tmp_path):
    path, data = shapes
    data = copy.deepcopy(data)
    _box_to(0, edge, beyond)(data)
    if not accepted:
        assert "within 1 pixel" in _refused(path, data)
        return
    (tmp_path / "edge.json").write_text(json.dumps(data))
    x, y, w, h = data["annotations"][0]["bbox"]
    assert np.array_equal(read_coco(tmp_path / "edge.json").records[0].boxes, [[x, y, x + w, y + h]])


def test_several_problems_name_the_first_five_and_count_the_rest(shapes):
    path, data = shapes
    data = copy.deepcopy(data)
    data["annotations"] = [
        {"id": 10 + i, "image_id": 1, "category_id": 1, "bbox": [5, 5, -1 - i, 5], "iscrowd": 0} for i in range(8)
    ]
    message = _refused(path, data)
    assert "(8 problems)" in message and "; and 3 more;" in message
    assert "annotation #4 (id 14)" in message and "annotation #5 (id 15)" not in message


def test_crowd_boxes_are_checked_then_skipped(shapes, tmp_path):
    path, data = shapes
    data = copy.deepcopy(data)
    data["annotations"][0]["iscrowd"] = 1
    (tmp_path / "crowd.json").write_text(json.dumps(data))
    records = read_coco(tmp_path / "crowd.json").records
    assert [len(r.boxes) for r in records] == [0, 1, 1]
    data["annotations"][0]["bbox"][2] = math.nan
    assert "is not finite" in _refused(path, data)


@pytest.mark.parametrize(
    "content, expected",
    [
        ([], "not COCO-style: its top level is a list"),
        (
            {"images": [], "annotations": {}, "categories": []},
            "not COCO-style: missing or malformed 'annotations': an object, expected a list",
        ),
        ({"images": []}, "not COCO-style: missing or malformed 'categories'"),
        ({"images": [], "categories": []}, "no categories, expected at least one"),
    ],
)
def test_malformed_files_are_refused(tmp_path, content, expected):
    (tmp_path / "d.json").write_text(json.dumps(content))
    with pytest.raises(InputError, match="^dataset .*d.json") as info:
        read_coco(tmp_path / "d.json")
    assert expected in str(info.value)


def test_sizes_and_counts_are_bounded(tmp_path, shapes, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: no disk space, refused before it is read
        f.truncate(coco.MAX_JSON_BYTES + 1)
    with pytest.raises(InputError, match=r"is 268,435,457 bytes, more than the limit of 268,435,456 \(256 MiB\)"):
        read_coco(big)
    path, _ = shapes
    monkeypatch.setattr(coco, "MAX_IMAGES", 2)
    with pytest.raises(InputError, match="has 3 images, more than the limit of 2"):
        read_coco(path)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="is not readable JSON"):
        read_coco(tmp_path / "deep.json")


def test_a_good_file_reads_as_written(shapes):
    path, data = shapes
    dataset = read_coco(path)
    assert [r.path.name for r in dataset.records] == ["000000.png", "000001.png", "000002.png"]
    for record, ann, img in zip(dataset.records, data["annotations"], data["images"], strict=True):
        x, y, w, h = ann["bbox"]
        assert (record.width, record.height) == (img["width"], img["height"])
        assert np.array_equal(record.boxes, [[x, y, x + w, y + h]]) and record.labels.tolist() == [ann["category_id"] - 1]
    check_images(dataset.records)  # the images are there and of their records' sizes


def test_images_are_checked_against_their_records(tmp_path):
    path = write_shapes(tmp_path, "test", 8, seed=3)
    data = json.loads(path.read_text())
    data["images"][1]["width"] += 3  # boxes still inside: read_coco accepts it, the image disagrees
    (tmp_path / "test" / "000003.png").unlink()
    (tmp_path / "test" / "000004.png").write_text("not an image")
    (tmp_path / "test.json").write_text(json.dumps(data))
    records = read_coco(path).records
    with pytest.raises(InputError) as info:
        check_images(records)
    message = str(info.value)
    width, height = data["images"][1]["width"], data["images"][1]["height"]
    assert message.startswith("3 of the 8 images of the dataset do not match their records: ")
    assert f"000001.png: is {width - 3}x{height} (width x height), its record says {width}x{height}" in message
    assert "000003.png: missing" in message and "000004.png: not an image file Pillow can read" in message
    check_images(records[5:])
    with pytest.raises(InputError, match="000002.png: is .* pixels, more than the limit of 1,000"):
        check_images(records[2:3], max_pixels=1000)
    for index in range(8):
        (tmp_path / "test" / f"{index:06d}.png").unlink(missing_ok=True)
    with pytest.raises(InputError, match=r"8 of the 8 images .*000004.png: missing; and 3 more; fix"):
        check_images(records)


def test_an_exif_turned_image_is_checked_as_it_is_loaded(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from overfeat.datasets.coco import Record
    from overfeat.runtime.image import load_image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide and 30 high, shown turned: 30 wide and 40 high
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "turned.jpg", exif=exif)
    assert load_image(tmp_path / "turned.jpg").shape[:2] == (40, 30)  # height 40, width 30
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    check_images([Record(tmp_path / "turned.jpg", 30, 40, *empty)])
    with pytest.raises(InputError, match="is 30x40 \\(width x height, after its EXIF orientation\\), its record says 40x30"):
        check_images([Record(tmp_path / "turned.jpg", 40, 30, *empty)])


def test_eval_refuses_bad_ground_truth_before_loading_the_model(shapes, tmp_path, capsys):
    from overfeat.cli import main

    path, data = shapes
    data = copy.deepcopy(data)
    data["annotations"][1]["bbox"][2] = -7
    (path.parent / "negative.json").write_text(json.dumps(data))
    out = tmp_path / "e.json"
    assert (
        main(
            ["eval", "--model", str(tmp_path / "no-model.onnx"), "--data", str(path.parent / "negative.json"), "--json", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("overfeat: error: dataset ") and len(err.splitlines()) == 1
    assert "annotation #1 (id 2) of image 2 (val/000001.png): bbox [" in err and "expected both positive" in err
    assert not out.exists()
