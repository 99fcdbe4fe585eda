"""Inference backends behind one small protocol, and the registry that names them.

A backend reports the model's metadata and its input/output names, and runs
``dict[str, ndarray] → dict[str, ndarray]``. ``available()`` tells whether a backend's libraries
are importable here; tests skip on the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Protocol

import numpy as np

from overfeat.errors import BackendError, InputError
from overfeat.metadata import ModelMeta


class Backend(Protocol):
    meta: ModelMeta
    source: str  # the file it was loaded from, for messages

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; feeds maps the input name ("image") to [N, 3, H, W] float32."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendEntry:
    name: str
    is_available: Callable[[], bool]
    factory: Callable[..., Backend]
    needs: str  # what to install when unavailable


def _onnxruntime_available() -> bool:
    return find_spec("onnxruntime") is not None


def _tensorrt_available() -> bool:
    if find_spec("tensorrt") is None or find_spec("cuda") is None:
        return False
    return find_spec("cuda.bindings") is not None or find_spec("cuda.cudart") is not None  # cuda-python, not another cuda.* package


def _torch_available() -> bool:
    return find_spec("torch") is not None and find_spec("safetensors") is not None


def _make_torch(path: str, **options) -> Backend:
    from overfeat.export.torch_backend import TorchBackend

    return TorchBackend(path, **options)


def _make_onnxruntime(path: str, **options) -> Backend:
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, **options)


def _make_tensorrt(path: str, **options) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(path, **options)


REGISTRY: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("onnxruntime", _onnxruntime_available, _make_onnxruntime, "pip install 'overfeat[ort]' (or 'overfeat[gpu]' on NVIDIA GPUs)"),
    "tensorrt": BackendEntry("tensorrt", _tensorrt_available, _make_tensorrt, "pip install 'overfeat[gpu]' on a machine with an NVIDIA GPU"),
    "torch": BackendEntry("torch", _torch_available, _make_torch, "pip install 'overfeat[export]'"),
}


def available_backends() -> list[str]:
    return [name for name, entry in REGISTRY.items() if entry.is_available()]


def default_backend(path: str | Path) -> str:
    """``tensorrt`` for a manifest (``.json``), ``torch`` for a ``.safetensors`` checkpoint,
    ``onnxruntime`` for an ONNX file."""
    text = str(path)
    return "tensorrt" if text.endswith(".json") else "torch" if text.endswith(".safetensors") else "onnxruntime"


def create_backend(path: str | Path, backend: str | None = None, **options) -> Backend:
    """Open ``path`` with the named backend (default: chosen from the file type)."""
    name = backend or default_backend(path)
    if name not in REGISTRY:
        raise InputError(f"unknown backend {name!r}: expected one of {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    if not entry.is_available():
        raise BackendError(f"backend {name!r} is not available here: {entry.needs}")
    if not Path(path).is_file():
        raise InputError(f"model {path} does not exist or is not a file")
    return entry.factory(str(path), **options)
