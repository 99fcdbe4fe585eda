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
from overfeat.metadata import INPUT_NAME, ModelMeta


class Backend(Protocol):
    name: str  # the registry's name of the backend
    meta: ModelMeta
    source: str  # the file it was loaded from, for messages

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; feeds maps the input name ("image") to [N, 3, H, W] float32."""
        ...

    def close(self) -> None: ...


def feed_image(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The one input of a feed dict, checked: float32 [N, 3, H, W] under the name ``image``."""
    image = feeds.get(INPUT_NAME)
    if not isinstance(image, np.ndarray) or image.dtype != np.float32 or image.ndim != 4 or image.shape[1] != 3:
        got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"input {INPUT_NAME!r}: got {got}, expected float32 [N, 3, H, W]")
    return image


@dataclass(frozen=True)
class BackendEntry:
    name: str
    is_available: Callable[[], bool]
    factory: Callable[..., Backend]
    needs: str  # what to install when unavailable
    options: tuple[str, ...] = ()  # the keyword options the factory takes beyond the path


def _onnxruntime_available() -> bool:
    return find_spec("onnxruntime") is not None


def tensorrt_missing() -> str | None:
    """Why TensorRT with cuda-python cannot be used here (a library not installed), or None.
    Whether a GPU is visible is :func:`overfeat.runtime.backends.tensorrt.unavailable`'s question."""
    if find_spec("tensorrt") is None:
        return "TensorRT is not installed here"
    if find_spec("cuda") is None or (find_spec("cuda.bindings") is None and find_spec("cuda.cudart") is None):
        return "cuda-python is not installed here"  # cuda.bindings (12.6.1 on) or cuda.cudart; not another cuda.* package
    return None


def _tensorrt_available() -> bool:
    return tensorrt_missing() is None


def _make_onnxruntime(path: str, **options) -> Backend:
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, **options)


def _openvino_available() -> bool:
    return find_spec("openvino") is not None


def _make_openvino(path: str, **options) -> Backend:
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(path, **options)


def _make_tensorrt(path: str, **options) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(path, **options)


def _triton_available() -> bool:
    return find_spec("tritonclient") is not None


def _make_triton(url: str, **options) -> Backend:
    from .triton import TritonBackend

    return TritonBackend(url, **options)


REMOTE = ("triton",)  # backends whose "path" is a server's URL, not a file

REGISTRY: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry(
        "onnxruntime",
        _onnxruntime_available,
        _make_onnxruntime,
        "pip install 'overfeat[ort]' (or 'overfeat[gpu]' on NVIDIA GPUs)",
        ("providers", "threads"),
    ),
    "tensorrt": BackendEntry(
        "tensorrt",
        _tensorrt_available,
        _make_tensorrt,
        "pip install 'overfeat[gpu]' on a machine with an NVIDIA GPU",
        ("device", "allow_host_code"),
    ),
    "openvino": BackendEntry(
        "openvino", _openvino_available, _make_openvino, "pip install 'overfeat[openvino]'", ("precision", "threads")
    ),
    "triton": BackendEntry(
        "triton", _triton_available, _make_triton, "pip install 'overfeat[triton]'", ("model", "protocol", "timeout")
    ),
}
ENTRY_POINTS = "overfeat.backends"  # other packages' backends (overfeat.export's torch) register here
_plugins_loaded = False


def registry() -> dict[str, BackendEntry]:
    """Every backend: the runtime's own and those registered through the ``overfeat.backends``
    entry point group (each a :class:`BackendEntry`), loaded once, on first use."""
    global _plugins_loaded
    if not _plugins_loaded:
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINTS):
            if point.name not in REGISTRY:
                REGISTRY[point.name] = point.load()
        _plugins_loaded = True
    return REGISTRY


def available_backends() -> list[str]:
    return [name for name, entry in registry().items() if entry.is_available()]


MODEL_KINDS = {".onnx": "onnx", ".json": "manifest", ".safetensors": "checkpoint"}  # file suffix → kind
KIND_BACKENDS = {"onnx": "onnxruntime", "manifest": "tensorrt", "checkpoint": "torch"}  # kind → its default backend


def model_kind(path: str | Path) -> str:
    """What a model file is, from its suffix: ``onnx`` (``.onnx``), ``manifest`` (``.json``, the
    engines of ``overfeat build``) or ``checkpoint`` (``.safetensors`` from ``overfeat train``,
    which the torch backend runs). Raises :class:`InputError` for any other suffix."""
    kind = MODEL_KINDS.get(Path(path).suffix)
    if kind is None:
        raise InputError(
            f"model {path}: expected an ONNX file (.onnx), a PyTorch checkpoint (.safetensors) "
            "or an engine manifest (manifest.json)"
        )
    return kind


def default_backend(path: str | Path) -> str:
    """``onnxruntime`` for an ONNX file, ``tensorrt`` for a manifest (``.json``), ``torch`` for a
    ``.safetensors`` checkpoint; an :class:`InputError` for anything else (:func:`model_kind`)."""
    return KIND_BACKENDS[model_kind(path)]


RUNNERS = ("openvino", "openvino:fp32", "openvino:bf16")  # what may follow '@' in a model spec


def model_spec(spec: str, what: str = "model") -> tuple[str, str, str | None]:
    """A model as bench and validate name it: a file (run by its :func:`default_backend`) or
    ``FILE.onnx@openvino[:fp32|:bf16]`` (OpenVINO, in that precision). Returns the file, the
    backend and the precision asked for (None: the backend's default); ``what`` names the
    argument in errors. The file must exist."""
    path, at, runner = str(spec).partition("@")
    if at and (Path(path).suffix != ".onnx" or runner not in RUNNERS):
        raise InputError(
            f"{what} {spec}: expected FILE.onnx@openvino or FILE.onnx@openvino:bf16 (OpenVINO, in fp32 or bf16), or a file alone"
        )
    if not Path(path).is_file():
        raise InputError(f"{what} {path} does not exist or is not a file")
    return path, "openvino" if at else default_backend(path), runner.partition(":")[2] or None


def create_backend(path: str | Path, backend: str | None = None, **options) -> Backend:
    """Open ``path`` with the named backend (default: chosen from the file type)."""
    name = backend or default_backend(path)
    backends = registry()
    if name not in backends:
        raise InputError(f"unknown backend {name!r}: expected one of {', '.join(backends)}")
    entry = backends[name]
    unknown = [k for k, v in options.items() if v is not None and k not in entry.options]
    if unknown:
        raise InputError(
            f"backend {name!r} takes no {unknown[0]!r} option"
            + (f"; it takes {', '.join(entry.options)}" if entry.options else "")
        )
    options = {k: v for k, v in options.items() if v is not None}
    if not entry.is_available():
        raise BackendError(f"backend {name!r} is not available here: {entry.needs}")
    if name not in REMOTE and not Path(path).is_file():
        raise InputError(f"model {path} does not exist or is not a file")
    return entry.factory(str(path), **options)


def runners_for(meta: ModelMeta) -> list[tuple[str, str, str | None]]:
    """How an ONNX file of this metadata can run: (backend, precisions, why not here or None),
    for ``overfeat inspect``."""
    rows: list[tuple[str, str, str | None]] = []
    ort = REGISTRY["onnxruntime"]
    rows.append(("onnxruntime", meta.precision, None if ort.is_available() else ort.needs))
    ov = REGISTRY["openvino"]
    if meta.precision == "int8":
        precisions = "int8 (the layers kept in float: fp32 or bf16)"
    else:
        precisions = "fp32, bf16" if meta.precision == "fp32" else "fp32 (the fp16 weights widened)"
    why = None if ov.is_available() else ov.needs
    if why is None and "bf16" in precisions:
        from .openvino import has_bf16

        if not has_bf16():
            precisions, why = precisions.replace(", bf16", ""), None
    rows.append(("openvino", precisions, why))
    rows.append(
        (
            "tensorrt",
            f"{meta.precision} engines from 'overfeat build'",
            None if REGISTRY["tensorrt"].is_available() else REGISTRY["tensorrt"].needs,
        )
    )
    return rows
