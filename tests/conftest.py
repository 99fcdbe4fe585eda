"""Shared fixtures: small exported models (same topology as the paper's, reduced width)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

HAS_TORCH = find_spec("torch") is not None and find_spec("onnx") is not None
needs_export = pytest.mark.skipif(not HAS_TORCH, reason="needs the 'export' extra (torch, onnx)")

# Width of the test models: every layer of the paper's topology, 1/16 of the channels.
TEST_WIDTH = 1 / 16


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory):
    """An exported accurate model, width 1/16, 5 named classes, heads cls, loc, det."""
    from overfeat.export import build_model, export_onnx

    path = tmp_path_factory.mktemp("small") / "accurate.onnx"
    model = build_model("accurate", 5, ("cls", "loc", "det"), TEST_WIDTH, seed=1)
    export_onnx(model, path, classes=["circle", "square", "triangle", "star", "cross"], check_sizes=())
    return path, model


CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"


@pytest.fixture(scope="session")
def shapes_onnx(tmp_path_factory):
    """The committed shapes checkpoint exported to ONNX (fp32), in a directory of its own."""
    from overfeat.cli import main

    out = tmp_path_factory.mktemp("shapes")
    assert (
        main(["export", "--checkpoint", str(CHECKPOINT), "--output", str(out / "model.onnx"), "--quiet", "--check-sizes", ""])
        == 0
    )
    return out / "model.onnx"


def gpu_reason() -> str | None:
    """Why GPU tests cannot run here, or None when TensorRT and a CUDA device are present
    (the same check that makes 'overfeat validate' skip TensorRT candidates)."""
    from overfeat.runtime.backends.tensorrt import unavailable

    return unavailable()


def requires_gpu(test):
    """Mark a test ``gpu`` and skip it, with the reason, where TensorRT or a GPU is absent."""
    reason = gpu_reason()
    return pytest.mark.gpu(pytest.mark.skipif(reason is not None, reason=reason or "")(test))
