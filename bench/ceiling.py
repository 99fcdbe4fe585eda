"""The machine's matrix-multiply rate: the ceiling a convolution network can approach.

fp32: a square single-precision GEMM through NumPy (its BLAS, all cores), best of a few runs.
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
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    weight = rng.integers(-127, 128, (n, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [onnx.numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return n**3 / _best(lambda: session.run(None, {"a": a}), repeat)
