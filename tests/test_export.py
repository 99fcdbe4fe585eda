"""ONNX export: dynamic shapes, metadata, TensorRT-friendly ops, parity, atomic writes."""

import json

import numpy as np
import pytest

from tests.conftest import TEST_WIDTH, needs_export

pytestmark = needs_export

from overfeat.errors import InputError, ParityError  # noqa: E402
from overfeat.metadata import ModelMeta  # noqa: E402

# Ops TensorRT's ONNX parser supports that this graph may use; anything else is a regression.
TENSORRT_OPS = {"Conv", "Relu", "MaxPool"}


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_metadata_and_graph(small_onnx):
    import onnx

    path, model = small_onnx
    proto = onnx.load(str(path))
    meta = ModelMeta.from_props({p.key: p.value for p in proto.metadata_props})
    assert meta.classes == ("circle", "square", "triangle", "star", "cross")
    assert meta.heads == ("cls", "loc", "det") and meta.background_index == 5 and meta.box_per_class
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["scores", "boxes", "det_scores"]
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3], "batch, height and width are named dynamic axes"
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= TENSORRT_OPS, ops - TENSORRT_OPS
    for node in proto.graph.node:
        if node.op_type == "MaxPool":
            dilations = [list(a.ints) for a in node.attribute if a.name == "dilations"]
            assert dilations in ([], [[1, 1]]), "TensorRT rejects pooling dilation"
    assert any(
        a.name == "dilations" and list(a.ints) == [3, 3] for n in proto.graph.node if n.op_type == "Conv" for a in n.attribute
    )


@pytest.mark.parametrize("size", [(221, 221), (233, 610), (500, 260), (351, 352)])
def test_runs_at_sizes_never_seen_during_export(small_onnx, size):
    import torch

    path, model = small_onnx
    rng = np.random.default_rng(sum(size))
    image = rng.standard_normal((3, 3, *size), dtype=np.float32)
    session = _session(path)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image}), strict=True))
    with torch.no_grad():
        expected = model(torch.from_numpy(image))
    meta = model.metadata()
    for name, ref in expected.items():
        ref = ref.numpy()
        assert got[name].shape == ref.shape
        assert got[name].shape[-2:] == meta.map_size(size)
        assert np.abs(got[name] - ref).max() / np.abs(ref).max() <= 1e-4


def test_parity_report_is_saved(tmp_path):
    from overfeat.export import build_model, export_onnx

    model = build_model("fast", 3, ("cls",), TEST_WIDTH, seed=2)
    out = tmp_path / "fast.onnx"
    report = export_onnx(model, out, check_sizes=[(240, 300)], batch=1)
    saved = json.loads((tmp_path / "fast.parity.json").read_text())
    assert saved["passed"] and report.passed
    sizes = {tuple(r["size"]) for r in saved["results"]}
    assert sizes == {*model.spec.pyramid, (240, 300)}
    assert all(r["batch"] == 1 and r["max_rel"] <= 1e-4 for r in saved["results"])
    assert _session(out).get_inputs()[0].shape[0] == 1, "a fixed batch is a static axis"


def test_failed_export_keeps_the_existing_file_and_leaves_no_temporaries(tmp_path):
    from overfeat.export import build_model, export_onnx

    out = tmp_path / "model.onnx"
    out.write_bytes(b"the good model")
    model = build_model("fast", 2, ("cls",), TEST_WIDTH, seed=2)
    # A tolerance no float computation meets makes the parity check fail after the file is written.
    with pytest.raises(ParityError, match="was not written"):
        export_onnx(model, out, check_sizes=(), tolerance=1e-12)
    assert out.read_bytes() == b"the good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.parity.json"]
    assert json.loads((tmp_path / "model.parity.json").read_text())["passed"] is False


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    from overfeat.export import build_model, export_onnx, onnx_export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "_parity", interrupted)
    out = tmp_path / "model.onnx"
    with pytest.raises(KeyboardInterrupt):
        export_onnx(build_model("fast", 2, ("cls",), TEST_WIDTH), out, check_sizes=())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(check_sizes=[(200, 300)]), "check size 200x300 is smaller than the model's 231x231 window"),
        (dict(opset=11), "opset 11 is not supported"),
        (dict(batch=0), "batch must be a positive integer"),
        (dict(classes=["a"]), "got 1 class names, expected 2"),
    ],
)
def test_export_rejects(tmp_path, kwargs, message):
    from overfeat.export import build_model, export_onnx

    with pytest.raises(InputError, match=message):
        export_onnx(build_model("fast", 2, ("cls",), TEST_WIDTH), tmp_path / "m.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folders_are_made_and_a_file_on_the_way_refused(tmp_path):
    from overfeat.export import build_model, export_onnx

    model = build_model("fast", 2, ("cls",), TEST_WIDTH)
    export_onnx(model, tmp_path / "nowhere" / "deeper" / "m.onnx", check_sizes=())
    assert (tmp_path / "nowhere" / "deeper" / "m.onnx").is_file()
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(InputError, match="plain is not a directory, so the folder"):
        export_onnx(model, tmp_path / "plain" / "m.onnx", check_sizes=())


def test_inspect_reports_map_sizes_that_onnxruntime_produces(small_onnx):
    from overfeat.calibration.inspect import inspect_onnx

    path, model = small_onnx
    info = inspect_onnx(path)
    text = info.report()
    assert "461x569  ->  21 x 30" in text and "circle" in text
    session = _session(path)
    rng = np.random.default_rng(0)
    for size in info.meta.pyramid:
        out = session.run(["scores"], {"image": rng.standard_normal((1, 3, *size), dtype=np.float32)})[0]
        assert out.shape[-2:] == info.meta.map_size(size)
