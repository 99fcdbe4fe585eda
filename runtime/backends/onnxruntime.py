"""ONNX Runtime backend: one session, dynamic shapes, execution providers configurable.

The CPU provider is the default. With onnxruntime-gpu installed, pass
``providers=["CUDAExecutionProvider", "CPUExecutionProvider"]`` (or TensorRT's provider).
``InferenceSession.run`` is safe to call from several threads at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from overfeat.errors import BackendError, InputError, ModelError
from overfeat.metadata import INPUT_NAME, ModelMeta

from . import feed_image


def session(model: str | os.PathLike[str] | bytes, *, providers: Sequence[str] | None = None, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, or the serialized model as bytes),
    the one way the toolkit opens ONNX Runtime: warnings silenced (log severity 3, errors only).

    Args:
        providers: execution providers in order of preference (default: the CPU provider alone).
        threads: intra-op threads (default: ONNX Runtime's own choice, every core).

    Raises :class:`BackendError` for a provider this onnxruntime lacks, :class:`ModelError` for a
    model ONNX Runtime refuses (not ONNX, truncated, an operator it does not know).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = list(providers) if providers else ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in available]
    if missing:
        raise InputError(
            f"`providers`: execution provider {missing[0]} is not available in this onnxruntime; available: {', '.join(available)}"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:
        name = f"(in memory, {len(model)} bytes)" if isinstance(model, bytes) else str(model)
        raise ModelError(f"model {name} could not be loaded by ONNX Runtime ({str(exc).splitlines()[0][:200]})") from None


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        self.source = path
        self.session = session(path, providers=providers, threads=threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = ModelMeta.from_props(props, source=path)
        check_io(
            self.meta,
            path,
            [(i.name, i.shape) for i in self.session.get_inputs()],
            [(o.name, o.shape) for o in self.session.get_outputs()],
        )
        self._outputs = self.meta.output_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feed_image(feeds)
        try:
            values = self.session.run(list(self._outputs), {INPUT_NAME: image})
        except Exception as exc:
            raise BackendError(
                f"ONNX Runtime failed on {self.source} with input {list(image.shape)}: {str(exc).splitlines()[0][:200]}"
            ) from None
        return dict(zip(self._outputs, values, strict=True))

    def close(self) -> None:
        self.session = None


def check_io(meta: ModelMeta, source: str, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]) -> None:
    """Refuse a model whose inputs or outputs do not match its metadata."""
    if [name for name, _ in inputs] != [INPUT_NAME]:
        raise ModelError(f"model {source} has inputs {[n for n, _ in inputs]}, expected one input {INPUT_NAME!r}")
    shapes = dict(outputs)
    for name, channels in meta.output_channels().items():
        if name not in shapes:
            raise ModelError(
                f"model {source}: metadata heads {list(meta.heads)} need output {name!r}, the graph has {sorted(shapes)}"
            )
        shape = shapes[name]
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != channels):
            raise ModelError(
                f"model {source}: output {name!r} has shape {shape}, expected [N, {channels}, h, w] from the metadata"
            )
