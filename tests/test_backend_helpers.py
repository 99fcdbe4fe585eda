"""The runtime's shared helpers for opening models: the ONNX Runtime session factory every caller
uses, the model kind read from a path, and why TensorRT cannot run here."""

from importlib.util import find_spec

import numpy as np
import pytest

from overfeat.errors import ModelError

needs_ort = pytest.mark.skipif(
    find_spec("onnxruntime") is None or find_spec("onnx") is None, reason="onnxruntime and onnx not installed"
)


def _tiny_model() -> bytes:
    """y = x + 1 on a float32 [2, 3], serialized."""
    import onnx
    from onnx import TensorProto, helper

    one = onnx.numpy_helper.from_array(np.ones((2, 3), np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [one],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@needs_ort
@pytest.mark.parametrize("as_bytes", [False, True])
def test_session_opens_a_path_or_bytes_on_the_cpu(tmp_path, as_bytes):
    from overfeat.runtime.backends.onnxruntime import session

    data = _tiny_model()
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    s = session(data if as_bytes else path)
    x = np.random.default_rng(1).standard_normal((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], x + 1)
    assert s.get_providers() == ["CPUExecutionProvider"]
    assert s.get_session_options().log_severity_level == 3


@needs_ort
@pytest.mark.parametrize("threads", [None, 1, 2])
def test_session_threads(tmp_path, threads):
    from overfeat.runtime.backends.onnxruntime import session

    options = session(_tiny_model(), threads=threads).get_session_options()
    assert options.intra_op_num_threads == (threads or 0)  # 0: ONNX Runtime's own choice


@needs_ort
def test_session_refuses_a_file_that_is_not_onnx(tmp_path):
    from overfeat.runtime.backends.onnxruntime import session

    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    with pytest.raises(ModelError, match=rf"model {path} could not be loaded by ONNX Runtime \(.+\)"):
        session(path)
    with pytest.raises(ModelError, match=r"model \(in memory, 5 bytes\) could not be loaded by ONNX Runtime"):
        session(b"junk!")


@needs_ort
def test_session_refuses_a_missing_provider():
    """A provider this onnxruntime lacks is the caller's mistake: an InputError (exit 2)."""
    from overfeat.errors import InputError
    from overfeat.runtime.backends.onnxruntime import session

    message = "`providers`: execution provider NoSuchExecutionProvider is not available in this onnxruntime; available: .*CPU"
    with pytest.raises(InputError, match=message):
        session(_tiny_model(), providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.parametrize(
    ("installed", "reason"),
    [
        ({"tensorrt", "cuda", "cuda.bindings"}, None),
        ({"tensorrt", "cuda", "cuda.cudart"}, None),  # cuda-python before 12.6.1
        (set(), "TensorRT is not installed here"),
        ({"cuda", "cuda.bindings"}, "TensorRT is not installed here"),
        ({"tensorrt"}, "cuda-python is not installed here"),
        ({"tensorrt", "cuda"}, "cuda-python is not installed here"),  # another package's cuda.*
    ],
)
def test_tensorrt_missing_names_the_library(monkeypatch, installed, reason):
    import overfeat.runtime.backends as backends
    from overfeat.engines.compiler import tensorrt_missing as build_reason
    from overfeat.runtime.backends.tensorrt import unavailable

    monkeypatch.setattr(backends, "find_spec", lambda name: object() if name in installed else None)
    assert backends.tensorrt_missing() == reason
    assert backends.REGISTRY["tensorrt"].is_available() == (reason is None)
    if reason is None:
        assert build_reason() is None
    else:
        gpu = "pip install 'overfeat[gpu]' on a machine with an NVIDIA GPU"
        assert build_reason() == f"{reason}: {gpu} ('overfeat build --dry-run' shows the plan without it)"
        assert unavailable() == f"TensorRT and cuda-python are not installed here ({gpu})"


@pytest.mark.parametrize(
    ("path", "kind", "backend"),
    [
        ("model.onnx", "onnx", "onnxruntime"),
        ("dir/model.int8.onnx", "onnx", "onnxruntime"),
        ("engines/manifest.json", "manifest", "tensorrt"),
        ("shapes-accurate-w12.safetensors", "checkpoint", "torch"),
    ],
)
def test_model_kind_from_the_suffix(path, kind, backend):
    from pathlib import Path

    from overfeat.runtime.backends import default_backend, model_kind

    assert model_kind(path) == model_kind(Path(path)) == kind
    assert default_backend(path) == backend


@pytest.mark.parametrize("path", ["model.pt", "model.pth", "model.bin", "model", "model.onnx.tmp", "model.ONNX"])
def test_model_kind_refuses_other_files_naming_what_is_accepted(path):
    from overfeat.errors import InputError
    from overfeat.runtime.backends import create_backend, default_backend, model_kind

    message = (
        rf"model {path}: expected an ONNX file \(\.onnx\), a PyTorch checkpoint \(\.safetensors\) "
        r"or an engine manifest \(manifest\.json\)"
    )
    for detect in (model_kind, default_backend, create_backend):
        with pytest.raises(InputError, match=message):
            detect(path)


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_validate_and_bench_take_the_kinds_the_backends_run(tmp_path, suffix):
    """A .pt state dict is for 'overfeat export'; the torch backend runs only .safetensors."""
    from overfeat.bench.suite import candidates_from
    from overfeat.engines.validate import describe
    from overfeat.errors import InputError

    path = tmp_path / f"weights{suffix}"
    path.write_bytes(b"state dict")
    for refuse in (describe, lambda p: candidates_from([p], None)):
        with pytest.raises(InputError, match=rf"weights\{suffix}: expected an ONNX file \(\.onnx\), a PyTorch checkpoint"):
            refuse(str(path))


def test_model_spec_names_the_file_its_backend_and_precision(tmp_path):
    """model_spec, which bench and validate both read their models with."""
    from overfeat.errors import InputError
    from overfeat.runtime.backends import model_spec

    for name in ("m.onnx", "manifest.json", "c.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    onnx = str(tmp_path / "m.onnx")
    assert model_spec(onnx) == (onnx, "onnxruntime", None)
    assert model_spec(f"{onnx}@openvino") == (onnx, "openvino", None)
    assert model_spec(f"{onnx}@openvino:bf16") == (onnx, "openvino", "bf16")
    assert model_spec(str(tmp_path / "manifest.json"))[1] == "tensorrt"
    assert model_spec(str(tmp_path / "c.safetensors"))[1] == "torch"
    for bad in (f"{onnx}@tensorrt", f"{onnx}@openvino:fp16", f"{tmp_path / 'manifest.json'}@openvino"):
        with pytest.raises(InputError, match="`models` .*: expected FILE.onnx@openvino or FILE.onnx@openvino:bf16"):
            model_spec(bad, "`models`")
    with pytest.raises(InputError, match="model .*absent.onnx does not exist or is not a file"):
        model_spec(str(tmp_path / "absent.onnx@openvino"))
