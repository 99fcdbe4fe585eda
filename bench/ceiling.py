"""The machine's matrix-multiply rates: the ceilings a convolution network can approach.

fp32: a square single-precision GEMM through NumPy (its BLAS, all cores), best of a few runs,
the same product as ONNX Runtime's ``MatMul`` (its own kernels) and through OpenVINO.
int8: ``MatMulInteger`` (uint8 × int8 → int32) in ONNX Runtime on the CPU, the kernel family
its quantized convolutions use (VNNI or AMX where the CPU has them), and through OpenVINO.
bf16: through OpenVINO (AMX or AVX-512 BF16 where the CPU has them; ONNX Runtime has no bf16
GEMM on the CPU). OpenVINO runs a chain of 8 products in one model, so that the conversion of
the input and output to and from the precision is paid once, as a network pays it once. Each
rate is measured when its library is installed (None otherwise); the ceiling of a precision is
its fastest. Rates are in multiply-accumulates per second; GFLOP/s are twice that.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from overfeat.fileio import work_dir


def _best(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def fp32_gemm_rate(n: int = 2048, repeat: int = 5, seed: int = 0) -> float:
    """MACs per second of an n×n by n×n float32 matrix product through NumPy."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    return n**3 / _best(lambda: a @ b, repeat)


def int8_gemm_rate(n: int = 2048, repeat: int = 5, seed: int = 0) -> float | None:
    """MACs per second of an n×n by n×n uint8 × int8 ``MatMulInteger`` in ONNX Runtime (CPU);
    None when onnx or onnxruntime is missing."""
    return _onnxruntime_rate("int8", n, repeat, seed)


def fp32_gemm_rate_onnxruntime(n: int = 2048, repeat: int = 5, seed: int = 0) -> float | None:
    """MACs per second of an n×n float32 ``MatMul`` in ONNX Runtime (its own GEMM kernels, which
    may beat NumPy's BLAS); None when onnx or onnxruntime is missing."""
    return _onnxruntime_rate("fp32", n, repeat, seed)


def _onnxruntime_rate(precision: str, n: int, repeat: int, seed: int) -> float | None:
    try:
        import onnx
        import onnxruntime  # noqa: F401 - only whether it is installed
        from onnx import TensorProto, helper
    except ImportError:
        return None
    from overfeat.runtime.backends.onnxruntime import session as ort_session

    rng = np.random.default_rng(seed)
    if precision == "int8":
        weight, a = rng.integers(-127, 128, (n, n), dtype=np.int8), rng.integers(0, 256, (n, n), dtype=np.uint8)
        op, kind, out_kind = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
    else:
        weight, a = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        op, kind, out_kind = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", kind, [n, n])],
        [helper.make_tensor_value_info("y", out_kind, [n, n])],
        [onnx.numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with work_dir("ceiling") as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(model, str(path))
        session = ort_session(path)
    return n**3 / _best(lambda: session.run(None, {"a": a}), repeat)


def openvino_rate(precision: str, n: int = 2048, depth: int = 8, repeat: int = 5, seed: int = 0) -> float | None:
    """MACs per second of ``depth`` chained n×n products through OpenVINO on the CPU in
    ``precision``: ``fp32``, ``bf16`` (the execution precision hint) or ``int8`` (each product's
    inputs fake-quantized, which OpenVINO runs as uint8 × int8); None when OpenVINO is missing
    or this CPU has no bf16 arithmetic for ``bf16``."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    rng = np.random.default_rng(seed)
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    y, lo, hi = x, ops.constant(np.float32(-4)), ops.constant(np.float32(4))
    for _ in range(depth):
        w = ops.constant((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32))
        if precision == "int8":
            y, w = ops.fake_quantize(y, lo, hi, lo, hi, 256), ops.fake_quantize(w, lo, hi, lo, hi, 255)
        y = ops.matmul(y, w, False, False)
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = core.compile_model(
        ov.Model([y], [x], "gemm"), "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    )
    request, feed = compiled.create_infer_request(), rng.standard_normal((n, n)).astype(np.float32)
    return depth * n**3 / _best(lambda: request.infer({"x": feed}), repeat)
