"""Importing the lightweight packages pulls in no heavy library."""

import json
import subprocess
import sys

HEAVY = [
    "torch",
    "onnx",
    "onnxruntime",
    "tensorrt",
    "polygraphy",
    "cuda",
    "PIL",
    "matplotlib",
    "safetensors",
    "numba",
    "openvino",
]
LIGHT = [
    "overfeat",
    "overfeat.cli",
    "overfeat.datasets.shapes",
    "overfeat.datasets.coco",
    "overfeat.geometry",
    "overfeat.metadata",
    "overfeat.fileio",
    "overfeat.progress",
    "overfeat.runtime.backends.onnxruntime",
    "overfeat.runtime.backends.tensorrt",
    "overfeat.runtime.backends.openvino",
    "overfeat.runtime.draw",
    "overfeat.runtime.manifest",
    "overfeat.engines.plan",
    "overfeat.engines.build",
    "overfeat.engines.compiler",
    "overfeat.engines.validate",
    "overfeat.bench",
    "overfeat.bench.run",
    "overfeat.bench.suite",
    "overfeat.bench.macs",
    "overfeat.bench.ceiling",
    "overfeat.bench.windows",
    "overfeat.calibration.inspect",
    "overfeat.runtime",
    "overfeat.runtime.kernels",
    "overfeat.runtime.compiled",
    "overfeat.engines",
    "overfeat.calibration",
]


def test_light_modules_import_no_heavy_library():
    code = (
        "import importlib, json, sys\n"
        f"for name in {LIGHT!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
