"""The TensorRT part of ``overfeat build``: parse the ONNX file once, build one plan per spec.

Thin on purpose; every decision is made before it, in :mod:`overfeat.engines.plan`. Written
against TensorRT's Python API as it is in 10.x and 11.x:

- the network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: required in
  10.x for the precision to come from the ONNX file (fp16 tensors, Q/DQ), ignored in 11.x,
  where every network is strongly typed (``EXPLICIT_BATCH`` is gone in 11 and not used);
- no precision builder flags (``FP16``/``INT8`` were removed in 11); ``TF32`` is cleared where
  it exists, so an fp32 file builds an fp32 engine;
- ``OnnxParser.parse_from_file`` (so weights stored as external data are found), errors read
  with ``IParserError.node_name()/node_operator()/desc()``;
- ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, …)``, ``builder_optimization_level``,
  ``hardware_compatibility_level`` (``SAME_COMPUTE_CAPABILITY`` needs 10.9 or later),
  ``BuilderFlag.VERSION_COMPATIBLE``; flags always by name (their integer values changed in 11);
- one ``ITimingCache`` (``create_timing_cache``/``set_timing_cache``/``serialize``) shared by
  the builder config of every plan, so tactics timed for one scale are reused by the next and,
  through the cache file, by the next run;
- ``build_serialized_network`` returns the plan, or None with the reason in the log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from overfeat.errors import BackendError, BuildError, InputError

from .plan import BuildPlan, EngineSpec

DRY_RUN = "('overfeat build --dry-run' shows the plan without it)"


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot build here (the runtime's :func:`~overfeat.runtime.backends.tensorrt_missing`,
    with what to do), or None."""
    from overfeat.runtime.backends import tensorrt_missing as missing

    reason = missing()
    if reason:
        return f"{reason}: pip install 'overfeat[gpu]' on a machine with an NVIDIA GPU {DRY_RUN}"
    return None


def _logger(trt):
    """A TensorRT logger that keeps the errors (for the message) and prints warnings."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                print(f"TensorRT: {msg}", file=sys.stderr)

    return Logger()


def parser_errors(parser) -> str:
    """The ONNX parser's errors, each with the node and operator it failed on."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node_name() if hasattr(error, "node_name") else ""
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        where = f"node {node or error.node()} ({op})" if (node or op) else f"node #{error.node()}"
        lines.append(f"{where}: {error.desc()}")
    return "; ".join(lines) or "no reason given"


class TensorRTCompiler:
    def __init__(self, plan: BuildPlan, timing_cache: Path | None = None, device: int = 0) -> None:
        reason = tensorrt_missing()
        if reason:
            raise BackendError(reason)
        import tensorrt as trt

        from overfeat.runtime.backends.tensorrt import cuda_call, cudart

        self.trt, self.plan = trt, plan
        rt = cudart()
        cuda_call(rt.cudaSetDevice(device), "cudaSetDevice")
        props = cuda_call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        self.gpu_name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        self.compute_capability = f"{props.major}.{props.minor}"
        self.tensorrt_version = trt.__version__
        self.logger = _logger(trt)
        self.builder = trt.Builder(self.logger)
        flags = trt.NetworkDefinitionCreationFlag
        self.network = self.builder.create_network(1 << int(flags.STRONGLY_TYPED))
        self.parser = trt.OnnxParser(self.network, self.logger)
        if not self.parser.parse_from_file(str(Path(plan.onnx).resolve())):
            raise BuildError(f"TensorRT could not parse {plan.onnx}: {parser_errors(self.parser)}")
        config = self.builder.create_builder_config()
        try:
            data = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
        except OSError as exc:
            raise InputError(f"`timing_cache` {timing_cache} cannot be read ({exc.strerror})") from None
        self.timing_cache_path = timing_cache
        self.cache = config.create_timing_cache(data)
        if self.cache is None:
            raise BuildError(f"TensorRT could not read the timing cache {timing_cache}; delete it or pass another `timing_cache`")

    def _config(self):
        trt, o = self.trt, self.plan.options
        config = self.builder.create_builder_config()
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        if o.workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, o.workspace)
        if o.opt_level is not None:
            config.builder_optimization_level = o.opt_level
        if o.hardware_compatibility != "none":
            member = {"ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}[o.hardware_compatibility]
            if not hasattr(trt.HardwareCompatibilityLevel, member):
                raise BuildError(
                    f"`hardware_compatibility` {o.hardware_compatibility} needs TensorRT 10.9 or later; this is {trt.__version__}"
                )
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, member)
        if o.version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if not config.set_timing_cache(self.cache, False):
            raise BuildError(
                f"TensorRT refused the timing cache {self.timing_cache_path} (made on another GPU or TensorRT version); delete it or pass another `timing_cache`"
            )
        return config

    def build(self, spec: EngineSpec) -> bytes:
        config = self._config()
        profile = self.builder.create_optimization_profile()
        profile.set_shape(self.plan.input_name, spec.min_shape, spec.opt_shape, spec.max_shape)
        if config.add_optimization_profile(profile) < 0:
            raise BuildError(f"TensorRT refused the profile {spec.label} for {spec.file}: {'; '.join(self.logger.errors[-3:])}")
        self.logger.errors.clear()
        plan = self.builder.build_serialized_network(self.network, config)
        if plan is None:
            raise BuildError(
                f"TensorRT could not build {spec.file} (input {spec.label}): {'; '.join(self.logger.errors) or 'see the log above'}"
            )
        return bytes(plan)

    def timing_cache(self) -> bytes | None:
        data = self.cache.serialize()
        return bytes(data) if data is not None else None
