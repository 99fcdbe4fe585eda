import json

import pytest

from overfeat.errors import InputError, ModelError
from overfeat.geometry import ACCURATE, spatial_ops
from overfeat.metadata import ModelMeta, read_class_names


def _meta(**changes):
    values = dict(
        arch="accurate",
        window=221,
        stride=12,
        fine_stride=True,
        geometry=spatial_ops(ACCURATE),
        heads=("cls", "loc", "det"),
        classes=("a", "b"),
        mean=(1.0, 2.0, 3.0),
        std=(4.0, 5.0, 6.0),
        pyramid=ACCURATE.pyramid,
        box_per_class=True,
        background_index=2,
    )
    values.update(changes)
    return ModelMeta(**values)


def test_round_trip():
    meta = _meta()
    props = meta.to_props()
    assert all(k.startswith("overfeat.") for k in props)
    assert json.loads(props["overfeat.classes"]) == ["a", "b"]
    assert ModelMeta.from_props(props) == meta
    assert meta.output_names == ("scores", "boxes", "det_scores")
    assert meta.output_channels() == {"scores": 2, "boxes": 8, "det_scores": 3}
    assert meta.map_size((461, 569)) == (21, 30)


@pytest.mark.parametrize(
    "key", ["overfeat.classes", "overfeat.geometry", "overfeat.window", "overfeat.box_encoding", "overfeat.background_index"]
)
def test_missing_key_is_named(key):
    props = _meta().to_props()
    del props[key]
    with pytest.raises(ModelError, match=f"m.onnx: metadata key '{key}' is missing"):
        ModelMeta.from_props(props, source="m.onnx")


def test_malformed_values_are_named():
    props = _meta().to_props()
    with pytest.raises(ModelError, match="'overfeat.window' is not valid JSON"):
        ModelMeta.from_props({**props, "overfeat.window": "{221"})
    with pytest.raises(ModelError, match="'overfeat.window' is str '221', expected int"):
        ModelMeta.from_props({**props, "overfeat.window": '"221"'})
    with pytest.raises(ModelError, match="'overfeat.window' is bool"):
        ModelMeta.from_props({**props, "overfeat.window": "true"})
    with pytest.raises(ModelError, match="format_version' is 7"):
        ModelMeta.from_props({**props, "overfeat.format_version": "7"})
    with pytest.raises(ModelError, match="'overfeat.heads': got \\['cls', 'seg'\\]"):
        ModelMeta.from_props({**props, "overfeat.heads": '["cls", "seg"]'})
    with pytest.raises(ModelError, match="background_index': got 5, expected 2"):
        ModelMeta.from_props({**props, "overfeat.background_index": "5"})


def test_no_metadata_at_all():
    with pytest.raises(ModelError, match="is this an ONNX file written by 'overfeat export'"):
        ModelMeta.from_props({}, source="other.onnx")


def test_read_class_names(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text(" cat \ndog\n\n")
    assert read_class_names(str(f), 2) == ("cat", "dog")
    with pytest.raises(InputError, match="has 2 names, expected 3"):
        read_class_names(str(f), 3)
    f.write_text("cat\n\ndog\n")
    with pytest.raises(InputError, match="line 2 is empty"):
        read_class_names(str(f))
    f.write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError, match="'cat' on line 3 repeats line 1"):
        read_class_names(str(f))
    with pytest.raises(InputError, match="could not be read"):
        read_class_names(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("arch", '"bogus"', "'overfeat.arch': got 'bogus', expected one of accurate, fast"),
        ("window", "0", "'overfeat.window': got 0"),
        ("window", "100000", "'overfeat.window': got 100000"),
        ("stride", "0", "'overfeat.stride': got 0"),
        ("stride", "24", "strides multiply to 12, the metadata stride is 24"),
        ("window", "231", "the window 231 must be the smallest input with a 1x1 output map"),
        ("geometry", "[]", "'overfeat.geometry': got 0 ops"),
        ("geometry", '[{"kernel": 7, "stride": 0}]', "spatial op stride 0: expected a whole number from 1 to 1024"),
        ("geometry", '[{"kernel": 2.5}]', "spatial op kernel 2.5"),
        ("geometry", '[{"size": 3}]', "expected objects of kernel, stride, pad, dilation"),
        ("pyramid", "[]", "'overfeat.pyramid': got 0 sizes"),
        ("pyramid", "[[200, 300]]", "size 200x300: each side must be from the window (221)"),
        ("pyramid", "[[300, 20000]]", "size 300x20000"),
        ("pyramid", "[[300]]", "'overfeat.pyramid'"),
        ("std", "[Infinity, 1, 1]", "'overfeat.std': got [inf, 1.0, 1.0], expected finite positive values"),
        ("std", "[0, 1, 1]", "'overfeat.std'"),
        ("mean", "[NaN, 1, 1]", "'overfeat.mean'"),
        ("classes", '["a", ""]', "'overfeat.classes': each name needs 1 to 256 characters"),
    ],
)
def test_metadata_out_of_bounds_is_refused_naming_the_file_once_and_the_key(key, value, message):
    props = _meta().to_props()
    props[f"overfeat.{key}"] = value
    with pytest.raises(ModelError) as info:
        ModelMeta.from_props(props, "m.onnx")
    text = str(info.value)
    assert message in text and text.startswith("m.onnx: ") and text.count("m.onnx") == 1, text
