"""Polygraphy runners for what Polygraphy cannot open itself (imports Polygraphy: load lazily).

- :class:`BackendRunner` runs any :mod:`overfeat.runtime.backends` backend: the PyTorch
  checkpoint runner (``torch``), OpenVINO (``openvino``, in fp32 or bf16) and the engine manifest
  runner (``tensorrt``: one manifest holds a plan per scale, chosen by input shape, and is
  checked against this GPU and TensorRT before any plan is deserialized).

ONNX files run in Polygraphy's own ``OnnxrtRunner`` (:func:`onnx_runner`), as
``polygraphy run --onnxrt`` would run them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from overfeat.metadata import INPUT_NAME


class BackendRunner(BaseRunner):
    """A Polygraphy runner over an overfeat backend, opened on activation and closed after."""

    def __init__(self, open_backend: Callable[[], object], name: str) -> None:
        super().__init__(name=name, prefix="overfeat-runner")
        self._open = open_backend
        self.backend = None

    def activate_impl(self) -> None:
        self.backend = self._open()

    def get_input_metadata_impl(self) -> TensorMetadata:
        return TensorMetadata().add(INPUT_NAME, dtype=np.float32, shape=("N", 3, "H", "W"))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        outputs = self.backend.run({INPUT_NAME: np.ascontiguousarray(feed_dict[INPUT_NAME], dtype=np.float32)})
        self.inference_time = time.perf_counter() - start
        return OrderedDict((name, outputs[name]) for name in self.backend.output_names)

    def deactivate_impl(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend = None


def onnx_runner(path: str, name: str):
    """Polygraphy's ONNX Runtime runner on the CPU."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["CPUExecutionProvider"]), name=name)


def backend_runner(path: str, backend: str, name: str, **options) -> BackendRunner:
    from overfeat.runtime.backends import create_backend

    return BackendRunner(lambda: create_backend(path, backend, **options), name)


def compare_func(atol: dict[str, float], rtol: float, stat: str):
    """Polygraphy's simple comparison with per-output absolute tolerances."""
    from polygraphy.comparator import compare

    simple = getattr(compare, "SimpleCompareFunc", None)
    if simple is None:  # Polygraphy before SimpleCompareFunc
        return compare.CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat=stat)
    return simple(atol=atol, rtol=rtol, check_error_stat=stat)


def quiet() -> None:
    """Polygraphy's own log only for what stops it; the report says the rest."""
    from polygraphy.logger import G_LOGGER

    if hasattr(G_LOGGER, "module_severity"):
        G_LOGGER.module_severity = G_LOGGER.CRITICAL
    else:  # older Polygraphy
        G_LOGGER.severity = G_LOGGER.CRITICAL
