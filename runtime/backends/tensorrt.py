"""TensorRT backend: a manifest of plans, one execution context per plan, cuda-python memory.

Written against TensorRT's name-based I/O API, the same in TensorRT 10.x and 11.x
(``deserialize_cuda_engine``, ``num_io_tensors``, ``get_tensor_name/mode/dtype``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), and cuda-python's runtime API
(``cuda.bindings.runtime`` from 12.6.1 on; ``cuda.cudart`` before). No PyTorch.

Before any plan is deserialized the manifest is checked (:mod:`overfeat.runtime.manifest`):
its fields, the host code of version-compatible plans (refused unless ``allow_host_code``), this
machine's TensorRT version and GPU compute capability, every plan's sha256. Plans are
deserialized on first use, from bytes whose sha256 is checked again. A context is not
thread-safe, so each has its own lock.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from overfeat.errors import BackendError, ModelError
from overfeat.metadata import INPUT_NAME
from overfeat.runtime.manifest import Manifest, PlanEntry, check_compatible, host_code_allowed, plan_path, verify_plans

from . import feed_image


def unavailable() -> str | None:
    """Why TensorRT engines cannot run here (library or GPU missing), or None when they can."""
    from . import tensorrt_missing

    if tensorrt_missing():
        return "TensorRT and cuda-python are not installed here (pip install 'overfeat[gpu]' on a machine with an NVIDIA GPU)"
    err, count = cudart().cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return f"no CUDA device is visible (cudaGetDeviceCount: error {int(err)}, {count} devices)"
    return None


def cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # cuda-python older than 12.6.1
        from cuda import cudart
    return cudart


def cuda_call(result, what: str):
    """cuda-python returns (err, value...) tuples; raise on anything but success."""
    err, *values = result
    if int(err) != 0:
        rt = cudart()
        _, message = rt.cudaGetErrorString(err)
        raise BackendError(f"CUDA {what} failed: {message.decode() if isinstance(message, bytes) else message}")
    return values[0] if len(values) == 1 else values


class _Engine:
    """One deserialized plan: engine, execution context, device buffers, stream, lock."""

    def __init__(self, runtime, plan: PlanEntry, data: bytes) -> None:
        import tensorrt as trt

        self.trt, self.plan = trt, plan
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize plan {plan.file} (see TensorRT's log above)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for plan {plan.file} (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]
        self.input_dtype = trt.nptype(self.engine.get_tensor_dtype(INPUT_NAME))
        self.lock = threading.Lock()
        self.stream = cuda_call(cudart().cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device(self, name: str, nbytes: int) -> int:
        rt = cudart()
        pointer, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                cuda_call(rt.cudaFree(pointer), "cudaFree")
            pointer = int(cuda_call(rt.cudaMalloc(nbytes), "cudaMalloc"))
            self.buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        rt = cudart()
        kind = rt.cudaMemcpyKind
        image = np.ascontiguousarray(image, dtype=self.input_dtype)  # fp32 unless the plan says otherwise
        with self.lock:
            if not self.context.set_input_shape(INPUT_NAME, image.shape):
                raise BackendError(f"plan {self.plan.file} rejected input shape {list(image.shape)}")
            pointer = self._device(INPUT_NAME, image.nbytes)
            cuda_call(
                rt.cudaMemcpyAsync(pointer, image.ctypes.data, image.nbytes, kind.cudaMemcpyHostToDevice, self.stream),
                "copy to device",
            )
            self.context.set_tensor_address(INPUT_NAME, pointer)
            results = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                host = np.empty(shape, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
                self.context.set_tensor_address(name, self._device(name, max(host.nbytes, 1)))
                results[name] = host
            if not self.context.execute_async_v3(int(self.stream)):
                raise BackendError(f"TensorRT execution of plan {self.plan.file} failed")
            for name, host in results.items():
                pointer, _ = self.buffers[name]
                cuda_call(
                    rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind.cudaMemcpyDeviceToHost, self.stream),
                    "copy to host",
                )
            cuda_call(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {name: value.astype(np.float32, copy=False) for name, value in results.items()}

    def close(self) -> None:
        rt = cudart()
        with self.lock:  # never under a running execution
            for pointer, _ in self.buffers.values():
                rt.cudaFree(pointer)
            self.buffers.clear()
            rt.cudaStreamDestroy(self.stream)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str, device: int = 0, allow_host_code: bool = False) -> None:
        """Open the engines of the manifest at ``path`` on GPU ``device``; ``allow_host_code``:
        load version-compatible plans, which run the TensorRT code they embed (refused otherwise)."""
        self.source = path
        self.manifest = Manifest.load(path)
        host_code = host_code_allowed(self.manifest, allow_host_code)  # before TensorRT is touched
        import tensorrt as trt

        rt = cudart()
        self.device = device
        cuda_call(rt.cudaSetDevice(device), "cudaSetDevice")
        props = cuda_call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        check_compatible(self.manifest, trt.__version__, f"{props.major}.{props.minor}", name)
        verify_plans(self.manifest)
        self.meta = self.manifest.meta
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if host_code:
            self._runtime.engine_host_code_allowed = True  # version-compatible plans embed their runtime
        self._engines: dict[str, _Engine] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.meta.output_names

    def _engine(self, plan: PlanEntry) -> _Engine:
        with self._lock:
            if self._closed:
                raise BackendError(f"the TensorRT backend for {self.source} is closed")
            if plan.file not in self._engines:
                data = plan_path(self.manifest, plan).read_bytes()
                if hashlib.sha256(data).hexdigest() != plan.sha256:  # replaced since verify_plans
                    raise ModelError(f"{self.source}: plan {plan.file} changed since it was opened; rebuild the engines")
                engine = _Engine(self._runtime, plan, data)
                missing = [n for n in self.output_names if n not in engine.outputs]
                if missing:
                    engine.close()
                    raise ModelError(
                        f"{self.source}: plan {plan.file} has outputs {engine.outputs}, the metadata needs {list(self.output_names)}; rebuild the engines"
                    )
                self._engines[plan.file] = engine
            return self._engines[plan.file]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feed_image(feeds)
        cuda_call(cudart().cudaSetDevice(self.device), "cudaSetDevice")  # the current device is per thread
        engine = self._engine(self.manifest.plan_for(image.shape))
        outputs = engine.run(image)
        return {name: outputs[name] for name in self.output_names}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
