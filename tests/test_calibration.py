"""INT8 and FP16 as ONNX transforms, on the committed shapes model: structure (Q/DQ counts,
zero points, TensorRT's rules), numbers (closeness to fp32 in ONNX Runtime), the range cache,
calibration images, the accuracy gate and the CLI's behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overfeat.cli import main
from tests.conftest import cli, minmax_int8, needs_export, words

pytestmark = needs_export

FAST = ["--pyramid", "2", "--no-flip", "--quiet"]  # two scales, no mirror: the same code, less work


@pytest.fixture(scope="module")
def shapes(shapes_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    (out / "model.onnx").symlink_to(shapes_onnx)
    return out


@pytest.fixture(scope="module")
def int8(shapes):
    """The shapes model in INT8 (minmax, 8 calibration images), written without the check."""
    cache = shapes / "model.int8.calib.json"  # read again by the sensitivity test
    return minmax_int8(shapes / "model.onnx", shapes / "model.int8.onnx", cache=cache, pyramid=2, flip=False)


def _session(path, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:  # run the graph as written: no Q/DQ fused into integer kernels
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"])


def _feeds(seed: int, sizes=((245, 281), (317, 389))):
    rng = np.random.default_rng(seed)
    return [{"image": rng.normal(0, 1, (2, 3, h, w)).astype(np.float32)} for h, w in sizes]


def _relative_l2(a, b) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


# ---------------------------------------------------------------------------- INT8 structure


def test_int8_follows_tensorrt_rules_node_by_node(shapes, int8):
    import onnx
    from onnx import TensorProto, numpy_helper

    from overfeat.calibration.structure import check_qdq

    model = onnx.load(str(int8))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    qs = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    # every Conv reads a dequantized activation and a dequantized weight, and a float bias
    for conv in convs:
        act, weight = producer[conv.input[0]], producer[conv.input[1]]
        assert act.op_type == weight.op_type == "DequantizeLinear", conv.name
        assert weight.input[0] in inits and inits[weight.input[0]].data_type == TensorProto.INT8
        scale = numpy_helper.to_array(inits[weight.input[1]])
        assert scale.shape == (inits[weight.input[0]].dims[0],)  # one scale per output channel
        assert next(a.i for a in weight.attribute if a.name == "axis") == 0
        assert numpy_helper.to_array(inits[act.input[1]]).size == 1  # per-tensor activation
        if len(conv.input) > 2:
            assert conv.input[2] in inits and inits[conv.input[2]].data_type == TensorProto.FLOAT
    # the weight DQs are one per Conv; the other DQs each read a QuantizeLinear
    weight_dqs = [d for d in dqs if d.input[0] in inits]
    assert len(weight_dqs) == len(convs) == 15
    assert len(dqs) - len(weight_dqs) == len(qs) > 0
    for node in qs + dqs:
        zero = inits[node.input[2]]
        assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any(), node.name
    for output in graph.output:
        assert producer[output.name].op_type == "Conv", output.name
    summary = check_qdq(model)
    assert summary.ok and summary.violations == ()
    assert (summary.quantize, summary.dequantize, summary.quantized_convs) == (len(qs), len(dqs), 15)


def test_int8_carries_the_metadata_over(shapes, int8):
    import onnx

    source = {p.key: p.value for p in onnx.load(str(shapes / "model.onnx"), load_external_data=False).metadata_props}
    props = {p.key: p.value for p in onnx.load(str(int8), load_external_data=False).metadata_props}
    assert json.loads(props.pop("overfeat.precision")) == "int8"
    record = json.loads(props.pop("overfeat.quantization"))
    assert record["method"] == "minmax" and record["excluded"] == [] and record["calibration"]["images"] == "shapes:val:8"
    source.pop("overfeat.precision")
    assert props == source


def test_int8_output_is_close_to_fp32(shapes, int8):
    fp32, q = _session(shapes / "model.onnx"), _session(int8)
    for feed in _feeds(3):
        for name, a, b in zip(("scores", "boxes", "det_scores"), q.run(None, feed), fp32.run(None, feed), strict=True):
            assert a.dtype == np.float32
            assert _relative_l2(a, b) < 0.25, name  # measured 0.05-0.11 on this narrow model
            assert _relative_l2(a, b) > 0, name  # it is really quantized


def test_output_qdq_pairs_are_removed_without_changing_more_than_their_rounding(shapes):
    """Before the removal an output is DQ(Q(x)); after, x: they differ by at most half a step."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry

    from overfeat.calibration.int8 import _float_outputs
    from overfeat.calibration.ranges import Method, Ranges, collect_ranges
    from overfeat.calibration.structure import check_qdq

    source = shapes / "model.onnx"
    ranges = Ranges("x", Method("minmax"), {}, collect_ranges(source, [_feeds(4)], Method("minmax")))
    quantizer = QDQQuantizer(
        load_model_with_shape_infer(source),
        True,
        False,
        QuantType.QInt8,
        QuantType.QInt8,
        ranges.tensors_data(),
        [],
        [],
        list(QDQRegistry),
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    quantizer.quantize_model()
    before = quantizer.model.model
    assert {v.rule for v in check_qdq(before).violations} == {"float-outputs"}
    steps = {}
    producer = {o: n for n in before.graph.node for o in n.output}
    inits = {i.name: i for i in before.graph.initializer}
    for out in before.graph.output:
        steps[out.name] = float(numpy_helper.to_array(inits[producer[out.name].input[1]]))
    after = onnx.ModelProto()
    after.CopyFrom(before)
    _float_outputs(after)
    assert check_qdq(after).ok
    assert len(after.graph.node) == len(before.graph.node) - 2 * len(steps)
    # unoptimised, both graphs compute the same float values up to the removed pair; optimised,
    # ONNX Runtime may fuse the last Conv and its output Q/DQ into an integer kernel in one only
    a, b = _session(before.SerializeToString(), optimize=False), _session(after.SerializeToString(), optimize=False)
    feed = _feeds(5, ((245, 245),))[0]
    for name, x, y in zip([o.name for o in before.graph.output], a.run(None, feed), b.run(None, feed), strict=True):
        clipped = np.clip(y, -127 * steps[name], 127 * steps[name])
        assert np.abs(x - clipped).max() <= steps[name] / 2 * (1 + 1e-4), name


# ---------------------------------------------------------------------------- the rule checker


def _qdq_conv(
    zero_point=0,
    zero_type=None,
    weight_axis=0,
    weight_scales=4,
    act_scales=1,
    bias_dq=False,
    output_dq=False,
    drop_zero=False,
    weight_pair=False,
    int8_output_dtype=False,
):
    """A one-Conv Q/DQ graph by hand, with one rule broken (or one valid variant) on request.

    ``drop_zero`` leaves out the activation zero points (with ``int8_output_dtype`` the Q says
    int8 through ``output_dtype``, opset 21); ``weight_pair`` quantizes a float weight in the graph
    (QuantizeLinear → DequantizeLinear); ``weight_axis=None`` leaves the axis at its default."""
    from onnx import TensorProto, helper, numpy_helper

    zero_type = zero_type or np.int8
    weight = "w_f" if weight_pair else "w_q"
    axis = {} if weight_axis is None else {"axis": weight_axis}
    inits = [
        numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32 if weight_pair else np.int8), weight),
        numpy_helper.from_array(np.full(weight_scales, 0.1, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(weight_scales, np.int8), "w_zero"),
        numpy_helper.from_array(
            np.full(act_scales, 0.05, np.float32).reshape(() if act_scales == 1 else (act_scales,)), "x_scale"
        ),
        numpy_helper.from_array(np.array(zero_point, zero_type), "x_zero"),
        numpy_helper.from_array(np.zeros(4, np.float32), "bias"),
    ]
    q_options = {"output_dtype": TensorProto.INT8} if int8_output_dtype else {}
    nodes = [
        helper.make_node(
            "QuantizeLinear", ["x", "x_scale"] + ([] if drop_zero else ["x_zero"]), ["x_q"], name="q_in", **q_options
        ),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale"] + ([] if drop_zero else ["x_zero"]), ["x_dq"], name="dq_in"),
    ]
    if weight_pair:
        nodes.append(helper.make_node("QuantizeLinear", [weight, "w_scale", "w_zero"], ["w_q"], name="q_weight", **axis))
    nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq_weight", **axis))
    bias = "bias"
    if bias_dq:
        inits += [
            numpy_helper.from_array(np.zeros(4, np.int32), "b_q"),
            numpy_helper.from_array(np.float32(0.005), "b_scale"),
            numpy_helper.from_array(np.int32(0), "b_zero"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b_dq"], name="dq_bias"))
        bias = "b_dq"
    nodes.append(helper.make_node("Conv", ["x_dq", "w", bias], ["y" if not output_dq else "y_f"], name="conv"))
    if output_dq:
        nodes += [
            helper.make_node("QuantizeLinear", ["y_f", "x_scale", "x_zero"], ["y_q"], name="q_out"),
            helper.make_node("DequantizeLinear", ["y_q", "x_scale", "x_zero"], ["y"], name="dq_out"),
        ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21 if int8_output_dtype else 18)])


@pytest.mark.parametrize(
    ("broken", "rule", "node"),
    [
        ({}, None, None),
        ({"zero_point": 3}, "int8-zero-point", "q_in"),
        ({"zero_type": np.uint8}, "int8-zero-point", "q_in"),
        ({"drop_zero": True}, "int8-zero-point", "q_in"),
        ({"weight_axis": 1}, "per-channel-weights", "dq_weight"),
        ({"weight_scales": 1}, "per-channel-weights", "dq_weight"),
        ({"act_scales": 3}, "per-tensor-activations", "q_in"),
        ({"bias_dq": True}, "float-bias", "dq_bias"),
        ({"output_dq": True}, "float-outputs", "dq_out"),
        ({"weight_axis": None}, "per-channel-weights", "dq_weight"),  # the ONNX default axis is 1
        ({"weight_pair": True}, None, None),
        ({"weight_pair": True, "weight_axis": 1}, "per-channel-weights", "q_weight"),
        ({"weight_axis": -4}, None, None),
        ({"drop_zero": True, "int8_output_dtype": True}, None, None),  # int8 by output_dtype; DQ of int8 data
    ],
)
def test_the_checker_names_each_violating_node(broken, rule, node):
    from overfeat.calibration.structure import check_qdq

    summary = check_qdq(_qdq_conv(**broken))
    if rule is None:
        assert summary.ok and summary.quantized_convs == 1
    else:
        assert rule in {v.rule for v in summary.violations}
        assert node in {v.node for v in summary.violations if v.rule == rule}
        assert f"{node}: {rule}" in summary.report()


def test_inspect_exits_1_on_a_rule_violation(tmp_path, capsys, shapes):
    import onnx

    model = _qdq_conv(zero_point=3)
    source = onnx.load(str(shapes / "model.onnx"), load_external_data=False)
    model.metadata_props.extend(source.metadata_props)
    onnx.save(model, str(tmp_path / "bad.onnx"))
    assert main(["inspect", str(tmp_path / "bad.onnx")]) == 1
    out = capsys.readouterr().out
    assert "q_in: int8-zero-point" in out and "dq_in: int8-zero-point" in out


# ---------------------------------------------------------------------------- FP16


def test_fp16_weights_and_activations_half_io_float(shapes, tmp_path):
    import onnx
    from onnx import TensorProto

    out = tmp_path / "model.fp16.onnx"
    assert cli("convert --precision fp16 --model", shapes / "model.onnx", "--output", out, "--no-check --quiet") == 0
    model = onnx.load(str(out))
    floats = [i for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert floats and all(i.data_type == TensorProto.FLOAT16 for i in floats)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output])
    assert json.loads({p.key: p.value for p in model.metadata_props}["overfeat.precision"]) == "fp16"
    fp32, half = _session(shapes / "model.onnx"), _session(out)
    for feed in _feeds(6):
        for a, b in zip(half.run(None, feed), fp32.run(None, feed), strict=True):
            assert _relative_l2(a, b) < 1e-2


# ---------------------------------------------------------------------------- cache


def test_range_cache_is_reused_and_a_stale_one_refused(shapes, tmp_path, capsys):
    import onnx

    model = shapes / "model.onnx"
    cache = tmp_path / "ranges.json"
    args = words(
        "calibrate --model",
        model,
        "--images shapes:val:8 --max-images 8 --method percentile --cache",
        cache,
        "--no-check --pyramid 1 --no-flip",
    )
    assert main([*args, "--output", str(tmp_path / "a.onnx")]) == 0
    first = json.loads(cache.read_text())
    assert first["method"] == "percentile" and first["percentile"] == 99.99 and first["count"] == 8 and first["ranges"]
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "b.onnx")]) == 0
    captured = capsys.readouterr()
    assert "reusing the percentile-99.99 ranges" in captured.err and "calibrating [" not in captured.err
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    # another model with the same cache: refused, nothing written
    other = tmp_path / "other.onnx"
    changed = onnx.load(str(model))
    changed.graph.initializer[0].raw_data = bytes(len(changed.graph.initializer[0].raw_data))  # other weights
    onnx.save(changed, str(other))
    assert main([*args[:1], "--model", str(other), *args[3:], "--output", str(tmp_path / "c.onnx")]) == 2
    assert "stale" in capsys.readouterr().err and not (tmp_path / "c.onnx").exists()
    # the same model with another method or other images: refused
    assert main([*args[:7], "--method", "minmax", *args[9:], "--output", str(tmp_path / "d.onnx")]) == 2
    assert "holds percentile-99.99 ranges" in capsys.readouterr().err
    assert main([*args[:3], "--images", "shapes:val:9", *args[5:], "--output", str(tmp_path / "e.onnx")]) == 2
    assert "other calibration data" in capsys.readouterr().err


def test_malformed_cache_is_refused(shapes, tmp_path, capsys):
    cache = tmp_path / "ranges.json"
    cache.write_text("{not json")
    assert (
        cli(
            "calibrate --model",
            shapes / "model.onnx",
            "--images shapes:val:8 --cache",
            cache,
            "--no-check --output",
            tmp_path / "x.onnx",
            "--quiet",
        )
        == 2
    )
    assert "malformed" in capsys.readouterr().err


# ---------------------------------------------------------------------------- images


def _write_pngs(folder: Path, count: int, seed: int) -> None:
    from overfeat.datasets.png import encode_png

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{i:03d}.png").write_bytes(encode_png(rng.integers(0, 256, (240 + 7 * i, 250, 3), dtype=np.uint8)))


def test_a_directory_with_corrupt_files_skips_and_lists_them(shapes, tmp_path, capsys):
    _write_pngs(tmp_path / "images", 9, seed=7)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    out = tmp_path / "m.int8.onnx"
    assert (
        cli(
            "calibrate --model",
            shapes / "model.onnx",
            "--images",
            tmp_path / "images",
            "--max-images 9 --no-check --output",
            out,
            FAST,
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "skipped 1 unreadable files:" in text and "broken.png" in text
    cache = json.loads((tmp_path / "m.int8.calib.json").read_text())
    assert cache["count"] == 9 and [Path(name).name for name, _ in cache["skipped"]] == ["broken.png"]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ("empty", "holds no image files"),
        ("few", "calibration needs at least 8"),
        ("shapes:val", "expected shapes:SPLIT:N"),
        ("shapes:nope:5", "expected shapes:SPLIT:N"),
        ("missing", "not a directory, a COCO .json file"),
    ],
)
def test_bad_calibration_images_are_refused(shapes, tmp_path, capsys, images, message):
    (tmp_path / "empty").mkdir()
    _write_pngs(tmp_path / "few", 5, seed=8)
    spec = str(tmp_path / images) if images in ("empty", "few", "missing") else images
    out = tmp_path / "x.onnx"
    assert (
        main(
            ["calibrate", "--model", str(shapes / "model.onnx"), "--images", spec, "--no-check", "--output", str(out), "--quiet"]
        )
        == 2
    )
    assert message in capsys.readouterr().err and not out.exists()


def test_too_few_readable_images_after_skipping(shapes, tmp_path, capsys):
    _write_pngs(tmp_path / "images", 6, seed=9)
    for i in range(3):
        (tmp_path / "images" / f"bad{i}.png").write_bytes(b"garbage")
    assert (
        cli(
            "calibrate --model",
            shapes / "model.onnx",
            "--images",
            tmp_path / "images",
            "--no-check --output",
            tmp_path / "x.onnx",
            FAST,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "only 6 of the images could be read" in err and "bad0.png" in err


def test_calibration_feeds_are_the_runtime_batches(shapes):
    from overfeat.calibration.inspect import inspect_onnx
    from overfeat.calibration.pipeline import calibration_feeds
    from overfeat.datasets.images import open_images
    from overfeat.runtime.pyramid import make_batch, pyramid_sizes

    meta = inspect_onnx(shapes / "model.onnx").meta
    images = open_images("shapes:test:3", seed=2)
    for _, image, truth in images.take(3):
        assert truth is not None and len(truth[0]) == len(truth[1]) > 0
        feeds = list(calibration_feeds(image, meta, "paper", True))
        sizes = pyramid_sizes("paper", meta, image.shape[:2])
        assert [f["image"].shape for f in feeds] == [(2, 3, *s) for s in sizes]
        for feed, size in zip(feeds, sizes, strict=True):
            np.testing.assert_array_equal(feed["image"], make_batch(image, size, meta, True))


def test_image_order_is_seeded_and_take_resumes(tmp_path):
    from overfeat.datasets.images import open_images

    _write_pngs(tmp_path / "images", 12, seed=10)
    a, b = open_images(str(tmp_path / "images"), seed=1), open_images(str(tmp_path / "images"), seed=1)
    assert [i.name for i in a.items] == [i.name for i in b.items]
    assert [i.name for i in a.items] != [i.name for i in open_images(str(tmp_path / "images"), seed=2).items]
    first = [name for name, _, _ in a.take(5)]
    rest = [name for name, _, _ in a.take(100, a.next)]
    assert first + rest == [i.name for i in a.items] and a.next == 12


# ---------------------------------------------------------------------------- gate and auto-exclude


def test_the_same_model_passes_with_exact_agreement(shapes):
    from overfeat.calibration.gate import compare
    from overfeat.datasets.images import open_images

    model = str(shapes / "model.onnx")
    result = compare(model, model, open_images("shapes:test:10", seed=3), 10, pyramid=1, flip=False)
    assert result.passed and result.images == 10
    assert all(e["max_abs"] == 0 for e in result.outputs.values())
    assert result.agreement["top1"] == result.agreement["top5_overlap"] == result.agreement["detect_recall"] == 1.0
    assert result.metrics["fp32"] == result.metrics["candidate"]


@pytest.mark.parametrize("budget", [1 << 30, 0])
def test_kept_reference_outputs_give_the_same_comparison(shapes, int8, budget):
    from overfeat.calibration.gate import ReferenceOutputs, compare
    from overfeat.datasets.images import open_images

    model, images = str(shapes / "model.onnx"), open_images("shapes:test:12", seed=3)
    plain = compare(model, str(int8), images, 12, pyramid=2, flip=False)
    kept = ReferenceOutputs(budget)
    first = compare(model, str(int8), images, 12, pyramid=2, flip=False, reference_outputs=kept)
    assert kept.hits == 0
    again = compare(model, str(int8), images, 12, pyramid=2, flip=False, reference_outputs=kept)
    assert kept.hits == (12 if budget else 0)  # the second comparison ran the reference on no image (or, with no memory, on all)
    for result in (first, again):
        assert result.to_dict() == plain.to_dict()
    assert plain.outputs["scores"]["max_abs"] > 0  # a real int8 candidate: the comparison has differences to get wrong
    other = open_images("shapes:test:12", seed=4)  # other images (same names) at the same positions: nothing kept applies
    hits = kept.hits
    assert (
        compare(model, str(int8), other, 12, pyramid=2, flip=False, reference_outputs=kept).to_dict()
        == compare(model, str(int8), other, 12, pyramid=2, flip=False).to_dict()
    )
    assert kept.hits == hits


# ranges cut at the 60th percentile clip most activations: an INT8 model the gate must refuse
POOR = ["--method", "percentile", "--percentile", "60"]


def test_a_failed_gate_exits_1_keeps_the_report_and_writes_no_model(shapes, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code = cli(
        "calibrate --model",
        shapes / "model.onnx",
        "--images shapes:val:8 --max-images 8",
        POOR,
        "--check shapes:test:12 --check-images 12 --min-top1-agreement 1.0 --max-map-drop 0",
        FAST,
        "--output",
        out,
    )
    report = json.loads((tmp_path / "m.int8.check.json").read_text())
    assert report["check"]["images"] == 12 and report["written"] == (code == 0)
    if code == 0:
        pytest.fail(
            f"even a poorly calibrated INT8 shapes model matched fp32 on 12 images; the gate cannot be shown failing: {report['check']}"
        )
    assert code == 1 and not out.exists()
    assert report["check"]["failures"] and not report["check"]["passed"]
    ranked = [s["node"] for s in report["sensitivity"]]
    assert len(ranked) == 15 and len(set(ranked)) == 15  # every Conv layer ranked
    assert "was not written" in capsys.readouterr().out


def test_auto_exclude_tries_prefixes_of_the_ranking_and_says_when_nothing_passes(shapes, tmp_path):
    """End to end on the shapes model. With this model no exclusion set passes the strict gate
    (one quantized layer already moves mAP by more than 5 points), so the run must end with
    that message and no file; which prefix is the smallest passing one is tested with a stand-in
    gate below (``test_bisection_finds_the_smallest_passing_prefix_like_a_linear_scan``)."""
    out = tmp_path / "m.int8.onnx"
    code = cli(
        "calibrate --model",
        shapes / "model.onnx",
        "--images shapes:val:8 --max-images 8",
        POOR,
        "--check shapes:test:10 --check-images 10 --min-top1-agreement 1.0 --max-map-drop 0.05 --auto-exclude",
        FAST,
        "--output",
        out,
    )
    report = json.loads((tmp_path / "m.int8.check.json").read_text())
    ranked = [s["node"] for s in report["sensitivity"]]
    assert len(ranked) == 15 and report["attempts"], "the full INT8 model failed, so exclusions were tried"
    for attempt in report["attempts"]:
        assert attempt["excluded"] == ranked[: len(attempt["excluded"])]  # always a prefix of the ranking
        assert not attempt["passed"]
    assert code == 1 and not out.exists() and report["excluded"] == []
    assert any("no INT8 model of this network passes" in f for f in report["check"]["failures"])


def test_auto_exclude_keeps_the_fewest_most_sensitive_layers_that_pass(shapes, tmp_path):
    """End to end on the shapes model: ranges cut at the 99th percentile fail the strict gate
    with every layer in int8 and pass it with some of the most sensitive layers in float."""
    import onnx

    from overfeat.calibration.structure import check_qdq

    out = tmp_path / "m.int8.onnx"
    code = cli(
        "calibrate --model",
        shapes / "model.onnx",
        "--images shapes:val:8 --max-images 8 --method percentile --percentile 99 --check shapes:test:10 --check-images 10 --auto-exclude",
        FAST,
        "--output",
        out,
    )
    report = json.loads((tmp_path / "m.int8.check.json").read_text())
    ranked = [s["node"] for s in report["sensitivity"]]
    if not report["attempts"]:
        pytest.fail("the full INT8 model passed, so --auto-exclude had nothing to do; pick ranges that fail for this model")
    assert code == 0 and out.exists() and report["written"] and report["check"]["passed"]
    k = len(report["excluded"])
    assert 1 <= k < 15 and report["excluded"] == ranked[:k]
    tried = {len(a["excluded"]): a["passed"] for a in report["attempts"]}
    assert tried[k] and (k == 1 or tried.get(k - 1) is False)  # the smallest passing prefix: one fewer was tried and failed
    model = onnx.load(str(out))
    summary = check_qdq(model)
    assert summary.ok and sorted(summary.float_convs) == sorted(report["excluded"]) and summary.rounded_inputs == ()
    assert json.loads({p.key: p.value for p in model.metadata_props}["overfeat.quantization"])["excluded"] == report["excluded"]
    assert all(report["speed"][key] > 0 for key in ("fp32", "int8", "int8_excluded"))


def test_sensitivity_ranks_each_layer_by_its_own_error(shapes, int8, tmp_path):
    """Each layer's error is that of the model with only it in int8, largest first; keeping the
    first-ranked layer in float lowers the full INT8 model's error more than the last-ranked."""
    import onnx

    from overfeat.calibration.int8 import conv_nodes, quantize_int8
    from overfeat.calibration.ranges import Method, Ranges
    from overfeat.calibration.sensitivity import output_error, rank_layers

    raw = json.loads((shapes / "model.int8.calib.json").read_text())
    ranges = Ranges(
        raw["model_sha256"],
        Method(raw["method"], raw["percentile"]),
        raw["data"],
        {k: tuple(v) for k, v in raw["ranges"].items()},
    )
    model = shapes / "model.onnx"
    feeds = _feeds(3)
    ranked = rank_layers(model, ranges, feeds)
    layers = conv_nodes(onnx.load(str(model), load_external_data=False))
    assert sorted(s.node for s in ranked) == sorted(layers)
    assert [s.error for s in ranked] == sorted((s.error for s in ranked), reverse=True)
    reference = _session(model)

    def error(exclude):
        path = tmp_path / "candidate.onnx"
        quantize_int8(model, ranges, path, exclude)
        return output_error(reference, _session(path), feeds)

    top = ranked[0]
    assert error([n for n in layers if n != top.node]) == pytest.approx(top.error)  # the ranking's own measure, redone
    full, without_top, without_last = error([]), error([top.node]), error([ranked[-1].node])
    assert without_top < min(without_last, full)


@pytest.mark.parametrize("seed", range(30))
def test_bisection_finds_the_smallest_passing_prefix_like_a_linear_scan(seed):
    from overfeat.calibration.pipeline import smallest_passing

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 16))
    threshold = int(rng.integers(1, n + 2)) if n else 1  # passes from here on (monotone); n + 1: never
    calls = []

    def passes(k: int) -> bool:
        calls.append(k)
        return k >= threshold

    linear = next((k for k in range(1, n) if passes(k)), None)
    calls.clear()
    assert smallest_passing(n - 1, passes) == linear
    assert len(calls) <= max(1, int(np.ceil(np.log2(max(n, 2)))) + 1)


# ---------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--check", "shapes:test:10", "--no-check"], "contradict"),
        (["--exclude", "no_such_node", "--no-check"], "is not a Conv node"),
        (["--method", "minmax", "--percentile", "99", "--no-check"], "--percentile applies to the percentile method"),
        (["--max-images", "3", "--no-check"], "calibration needs at least 8"),
        (["--auto-exclude", "--no-check"], "--auto-exclude needs the accuracy check"),
        (["--min-top1-agreement", "1.5"], "within 0..1"),
        (["--images", "shapes:val:8", "--max-images", "8"], "held-out images"),
    ],
)
def test_calibrate_refuses_bad_arguments(shapes, tmp_path, capsys, extra, message):
    out = tmp_path / "x.onnx"
    assert cli("calibrate --model", shapes / "model.onnx", "--images shapes:val:12", extra, "--output", out, "--quiet") == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_convert_refuses_without_check_data_and_non_fp32_models(shapes, int8, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert main(["convert", "--precision", "fp16", "--model", str(shapes / "model.onnx"), "--output", str(out)]) == 2
    assert "--check DATA" in capsys.readouterr().err
    assert main(["convert", "--precision", "fp16", "--model", str(int8), "--output", str(out), "--no-check"]) == 2
    assert "already int8" in capsys.readouterr().err and not out.exists()


def test_exclude_keeps_exactly_those_convs_in_float(shapes, tmp_path):
    import onnx

    from overfeat.calibration.structure import check_qdq

    out = tmp_path / "m.int8.onnx"
    assert (
        cli(
            "calibrate --model",
            shapes / "model.onnx",
            "--images shapes:val:8 --max-images 8 --method minmax --exclude node_conv2d_3,node_conv2d_14 --no-check",
            FAST,
            "--output",
            out,
        )
        == 0
    )
    model = onnx.load(str(out))
    summary = check_qdq(model)
    assert summary.ok and summary.float_convs == ("node_conv2d_3", "node_conv2d_14") and summary.quantized_convs == 13
    assert json.loads({p.key: p.value for p in model.metadata_props}["overfeat.quantization"])["excluded"] == [
        "node_conv2d_3",
        "node_conv2d_14",
    ]


def test_excluded_layers_read_their_input_in_float(shapes, tmp_path):
    """The trunk output feeds the first layer of every head. With the trunk and the cls head
    excluded and the other heads quantized, the quantizer's shared Q/DQ pair on that tensor
    would still round the cls head's input: ``scores`` must instead equal fp32's."""
    import onnx

    from overfeat.calibration.structure import check_qdq

    trunk_and_cls = [f"node_conv2d{'' if k == 0 else f'_{k}'}" for k in range(9)]
    out = tmp_path / "heads.int8.onnx"
    minmax_int8(shapes / "model.onnx", out, pyramid=2, flip=False, exclude=trunk_and_cls)
    model = onnx.load(str(out))
    summary = check_qdq(model)
    assert (
        summary.ok
        and summary.float_convs == tuple(trunk_and_cls)
        and summary.quantized_convs == 6
        and summary.rounded_inputs == ()
    )
    producer = {o: n for n in model.graph.node for o in n.output}
    first_cls = next(n for n in model.graph.node if n.name == "node_conv2d_6")
    assert producer[first_cls.input[0]].op_type == "MaxPool"  # the float trunk output itself
    fp32, int8 = _session(shapes / "model.onnx", optimize=False), _session(out, optimize=False)
    for feed in _feeds(3):
        a = dict(zip([o.name for o in fp32.get_outputs()], fp32.run(None, feed), strict=True))
        b = dict(zip([o.name for o in int8.get_outputs()], int8.run(None, feed), strict=True))
        np.testing.assert_allclose(b["scores"], a["scores"], rtol=1e-5, atol=1e-5)
        assert _relative_l2(b["det_scores"], a["det_scores"]) > 1e-4  # the det head is quantized


def test_cache_made_with_another_seed_or_pyramid_is_refused(shapes, tmp_path, capsys):
    base = words(
        "calibrate --model",
        shapes / "model.onnx",
        "--images shapes:val:8 --max-images 8 --method minmax --cache",
        tmp_path / "c.json",
        "--no-check --no-flip --quiet",
    )
    assert main([*base, "--pyramid", "1", "--output", str(tmp_path / "a.onnx")]) == 0
    assert main([*base, "--pyramid", "2", "--output", str(tmp_path / "b.onnx")]) == 2
    assert "other calibration data (pyramid '1' → '2')" in capsys.readouterr().err
    assert main([*base, "--pyramid", "1", "--seed", "3", "--output", str(tmp_path / "b.onnx")]) == 2
    assert "seed 0 → 3" in capsys.readouterr().err and not (tmp_path / "b.onnx").exists()


def test_a_replaced_image_invalidates_the_cache(shapes, tmp_path, capsys):
    import os

    _write_pngs(tmp_path / "images", 8, seed=11)
    base = words(
        "calibrate --model",
        shapes / "model.onnx",
        "--images",
        tmp_path / "images",
        "--max-images 8 --method minmax --cache",
        tmp_path / "c.json",
        "--no-check",
        FAST,
    )
    assert main([*base, "--output", str(tmp_path / "a.onnx")]) == 0
    replaced = tmp_path / "images" / "003.png"
    _write_pngs(tmp_path / "other", 1, seed=12)
    os.replace(tmp_path / "other" / "000.png", replaced)
    assert main([*base, "--output", str(tmp_path / "b.onnx")]) == 2
    assert "other calibration data (fingerprint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--check-images", "5"], "needs at least 10 held-out images"),
        (["--check", "shapes:val:30"], "is the calibration split"),
        (["--check", "shapes:test:4"], "holds 4 images"),
        (["--report", "/proc/version/r.json"], "is not a directory"),
    ],
)
def test_check_problems_are_refused_before_any_work(shapes, tmp_path, capsys, extra, message):
    out = tmp_path / "x.onnx"
    assert cli("calibrate --model", shapes / "model.onnx", "--images shapes:val:12", extra, "--output", out, "--quiet") == 2
    err = capsys.readouterr().err
    assert message in err and not out.exists() and not (tmp_path / "x.calib.json").exists()


def test_output_may_not_replace_the_model(shapes, capsys):
    """The command line refuses an output that is one of its inputs; the library, its model."""
    from overfeat.calibration.pipeline import convert
    from overfeat.errors import InputError

    model = str(shapes / "model.onnx")
    assert main(["convert", "--precision", "fp16", "--model", model, "--output", model, "--no-check"]) == 2
    assert "is the input" in capsys.readouterr().err
    with pytest.raises(InputError, match="is the model itself"):
        convert(model, model, "fp16", None)


def test_a_gate_that_cannot_apply_is_refused(tmp_path, capsys):
    model = tmp_path / "det.onnx"
    assert (
        cli(
            "export --arch accurate --random-init --heads det,loc --num-classes 3 --width 0.0625 --output",
            model,
            "--check-sizes",
            [""],
            "--quiet",
        )
        == 0
    )
    _write_pngs(tmp_path / "images", 12, seed=13)
    assert cli("convert --precision fp16 --model", model, "--output", tmp_path / "x.onnx", "--check", tmp_path / "images") == 2
    assert "have no labels: give labelled --check data (a COCO JSON)" in capsys.readouterr().err


def test_compare_options_take_keyword_changes_and_refuse_unknown_ones(tmp_path):
    from overfeat.calibration.gate import CompareOptions, GateConfig, compare
    from overfeat.datasets.images import open_images

    options = CompareOptions(pyramid=2, flip=False, gate=GateConfig(0.5))
    assert options.candidate_backend == "onnxruntime" and options.score_threshold == 0.1
    with pytest.raises(TypeError, match="pyramids"):
        compare(str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), open_images("shapes:test:10", 0), 10, 0, options, pyramids=2)


# ---------------------------------------------------------------------------- damaged range caches


@pytest.fixture(scope="module")
def range_cache(shapes, tmp_path_factory):
    """A range cache made by 'overfeat calibrate' (minmax, 8 images, one scale), the command line
    that reads it again (without --cache and --output) and the INT8 model it made."""
    folder = tmp_path_factory.mktemp("range-cache")
    args = words(
        "calibrate --model", shapes / "model.onnx", "--images shapes:val:8 --max-images 8 --method minmax --no-check", FAST
    )
    args[args.index("--pyramid") + 1] = "1"
    assert main([*args, "--cache", str(folder / "good.json"), "--output", str(folder / "good.onnx")]) == 0
    return args, json.loads((folder / "good.json").read_text()), folder / "good.onnx"


def _first(data: dict) -> str:
    return sorted(data["ranges"])[0]


def _range(value):
    def edit(data):
        data["ranges"][_first(data)] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_range([0.0, 0.0]), "has the range [0.0, 0.0], expected low < high"),
        (_range([5.0, -5.0]), "has the range [5.0, -5.0], expected low < high"),
        (_range([-1e38, 1e38]), "has the range [-1e+38, 1e+38], expected finite bounds within ±1e+30"),
        (_range([float("nan"), 1.0]), "has the range [nan, 1.0], expected finite bounds"),
        (_range([float("-inf"), 1.0]), "has the range [-inf, 1.0], expected finite bounds"),
        (_range(["-1", 1.0]), "has the range ['-1', 1.0], expected [low, high], two numbers"),
        (_range([-1.0, 0.5, 1.0]), "expected [low, high], two numbers"),
        (_range([False, True]), "expected [low, high], two numbers"),
        (
            lambda d: d["ranges"].update(not_a_tensor=[-1.0, 1.0]),
            "holds ranges of 1 tensors the model does not have ('not_a_tensor')",
        ),
        (lambda d: d["ranges"].pop(_first(d)), "lacks the ranges of 1 tensors of the model"),
        (lambda d: d.update(method=5), "is malformed: its method is int, expected text"),
        (lambda d: d.update(percentile="99.99"), "is malformed: its percentile is str, expected a number or null"),
        (lambda d: d.update(percentile=True), "is malformed: its percentile is bool"),
        (lambda d: d.update(ranges=[["x", -1, 1]]), "is malformed: its ranges is list, expected an object"),
        (lambda d: d.update(end=-3), "is malformed: a negative count"),
        (lambda d: d.update(skipped=[["a.png"]]), "is malformed: skipped holds other than [name, reason] pairs"),
    ],
)
def test_a_damaged_range_cache_is_refused_and_nothing_written(range_cache, tmp_path, capsys, edit, message):
    args, good, _ = range_cache
    data = json.loads(json.dumps(good))
    edit(data)
    cache = tmp_path / "ranges.json"
    cache.write_text(json.dumps(data))
    before = cache.read_bytes()
    out = tmp_path / "x.onnx"
    assert main([*args, "--cache", str(cache), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--cache {cache}" in err and message in err
    assert "delete it, or pass --no-cache to calibrate without a cache" in err and "`" not in err
    assert not out.exists() and not (tmp_path / "x.check.json").exists() and cache.read_bytes() == before


def test_a_cache_too_large_is_refused_before_it_is_parsed(range_cache, tmp_path, capsys):
    from overfeat.calibration.ranges import MAX_CACHE_BYTES

    args, good, _ = range_cache
    cache = tmp_path / "ranges.json"
    text = json.dumps(good)
    cache.write_text(text + " " * (MAX_CACHE_BYTES + 1 - len(text)))
    assert main([*args, "--cache", str(cache), "--output", str(tmp_path / "x.onnx")]) == 2
    assert f"--cache {cache} is larger than 16 MiB" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_a_sound_edited_cache_is_used(range_cache, tmp_path, capsys):
    """The checks refuse damage, not edits: ranges that are finite, ordered and of the model's
    tensors are used as they are (an asymmetric range included)."""
    args, good, model = range_cache
    data = json.loads(json.dumps(good))
    low, high = data["ranges"]["image"]
    data["ranges"]["image"] = [low / 2, high / 4]  # the input's int8 scale halves
    cache = tmp_path / "ranges.json"
    cache.write_text(json.dumps(data))
    assert main([*args, "--cache", str(cache), "--output", str(tmp_path / "x.onnx")]) == 0
    assert f"from cache {cache}" in capsys.readouterr().out
    assert (tmp_path / "x.onnx").read_bytes() != model.read_bytes()  # made with the edited range


def test_calibrated_tensors_are_those_the_calibrator_gives_ranges_to(shapes, range_cache):
    from overfeat.calibration.ranges import calibrated_tensors

    _, good, _ = range_cache
    names = calibrated_tensors(shapes / "model.onnx")
    assert names == set(good["ranges"]) and "image" in names and len(names) > 10


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [
        ({"a": [-1e30, 1e30], "b": (0.0, 1e-30)}, None),
        ({"a": [-1e30, 1.0000001e30]}, "expected finite bounds within ±1e+30"),
        ({"a": [1, 1]}, "has the range [1, 1], expected low < high"),
        ({"a": [-1, 1], "b": [2, 3]}, None),
        ({"a": None}, "expected [low, high], two numbers"),
        ({"a": [-(10**400), 1]}, "expected finite bounds"),
    ],
)
def test_range_problem_at_its_bounds(ranges, problem):
    from overfeat.calibration.ranges import range_problem

    got = range_problem(ranges)
    assert got == problem if problem is None else problem in got
    if problem is None:
        assert range_problem(ranges, {"a", "b", "c"}) == "it lacks the ranges of 1 tensors of the model ('c')"
