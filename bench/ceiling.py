"""The machine's matrix-multiply rate: the ceiling a convolution network can approach.

fp32: a square single-precision GEMM through NumPy (its BLAS, all cores), best of a few runs,
and the same product as ONNX Runtime's ``MatMul`` (its own kernels); the ceiling is the faster.
int8: ``MatMulInteger`` (uint8 × int8 → int32) in ONNX Runtime on the CPU, the kernel family
its quantized convolutions use (VNNI where the CPU has it), when onnx and onnxruntime are
installed. Rates are in multiply-accumulates per second; GFLOP/s are twice that.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


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
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    if precision == "int8":
        weight, a = rng.integers(-127, 128, (n, n), dtype=np.int8), rng.integers(0, 256, (n, n), dtype=np.uint8)
        op, kind, out_kind = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
    else:
        weight, a = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        op, kind, out_kind = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", kind, [n, n])],
        [helper.make_tensor_value_info("y", out_kind, [n, n])],
        [onnx.numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return n**3 / _best(lambda: session.run(None, {"a": a}), repeat)
