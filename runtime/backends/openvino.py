"""OpenVINO backend: the toolkit's ONNX files (fp32, fp16, Q/DQ INT8) on Intel CPUs, where AMX and
VNNI make bf16 and int8 several times faster than fp32.

The model is compiled once, with its dynamic batch, height and width, for the CPU. The
execution precision is explicit: an fp32 or fp16 file runs in ``fp32`` unless ``bf16`` is asked
for (OpenVINO's own default on AMX machines is bf16 even for an fp32 file); a Q/DQ INT8 file runs
its quantized layers in int8 and the rest in the precision asked for (``fp32`` by default).
Each thread infers with an infer request of its own, so one backend may serve several threads.
"""

from __future__ import annotations

import threading

import numpy as np

from overfeat.errors import BackendError, InputError, ModelError
from overfeat.metadata import INPUT_NAME, ModelMeta

from . import feed_image
from .onnxruntime import check_io

PRECISIONS = ("fp32", "bf16")  # execution precisions of the layers that are not quantized
_HINT = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: str, precision: str | None = None, threads: int | None = None) -> None:
        import openvino as ov

        precision = precision or "fp32"
        if precision not in PRECISIONS:
            raise InputError(f"OpenVINO execution precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.source = path
        core = ov.Core()
        if precision == "bf16" and not has_bf16():
            raise BackendError(
                f"this CPU has no bf16 arithmetic (OpenVINO's CPU capabilities: {', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}); "
                "run the fp32 file in fp32, or INT8"
            )
        try:
            model = core.read_model(path)
        except Exception as exc:
            raise ModelError(f"model {path} could not be read by OpenVINO ({_first_line(exc)})") from None
        self.meta = ModelMeta.from_props(_metadata(model), source=path)
        check_io(
            self.meta,
            path,
            [(i.get_any_name(), _shape(i)) for i in model.inputs],
            [(o.get_any_name(), _shape(o)) for o in model.outputs],
        )
        config = {"INFERENCE_PRECISION_HINT": _HINT[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelError(f"model {path} could not be compiled by OpenVINO ({_first_line(exc)})") from None
        # a Q/DQ file: int8 where it is quantized, the precision asked for elsewhere
        self.execution_precision = (
            ("int8" if precision == "fp32" else "int8/bf16") if self.meta.precision == "int8" else precision
        )
        self.version = ov.get_version()
        self._outputs = self.meta.output_names
        self._ports = [self.compiled.output(name) for name in self._outputs]
        self._local = threading.local()

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feed_image(feeds)
        if self.compiled is None:
            raise BackendError(f"the OpenVINO backend of {self.source} is closed")
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        try:
            results = request.infer({INPUT_NAME: np.ascontiguousarray(image)})
        except Exception as exc:
            raise BackendError(f"OpenVINO failed on {self.source} with input {list(image.shape)}: {_first_line(exc)}") from None
        return {name: np.array(results[port], copy=True) for name, port in zip(self._outputs, self._ports, strict=True)}

    def close(self) -> None:
        self.compiled = None
        self._ports = []
        self._local = threading.local()


def _metadata(model) -> dict[str, str]:
    """The ONNX file's ``metadata_props``: OpenVINO's ONNX reader keeps them under the model's
    ``framework`` runtime information."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    return {str(key): value.astype(str) for key, value in info["framework"].items()}


def _shape(port) -> list:
    """A port's shape as ONNX Runtime gives it: ints where static, names where dynamic."""
    return [d.get_length() if d.is_static else "?" for d in port.get_partial_shape()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has bf16 arithmetic here (AMX or AVX-512 BF16)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def unavailable() -> str | None:
    """Why the OpenVINO backend cannot run here, or None."""
    from importlib.util import find_spec

    if find_spec("openvino") is None:
        return "OpenVINO is not installed (pip install 'overfeat[openvino]')"
    return None
