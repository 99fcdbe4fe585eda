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


def words(*parts) -> list[str]:
    """A command line from ``parts``: a string is split at white space, a list or tuple gives its
    items as they are, anything else (a path, a number) is one word."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out += part.split()
        elif isinstance(part, (list, tuple)):
            out += [str(p) for p in part]
        else:
            out.append(str(part))
    return out


def cli(*parts) -> int:
    """Run ``overfeat`` with the :func:`words` of ``parts``; its exit code."""
    from overfeat.cli import main

    return main(words(*parts))


def minmax_int8(model, output, *, cache=None, pyramid="paper", flip: bool = True, exclude=()):
    """``model`` in INT8 by minmax on 8 generated validation images, written without the accuracy
    check (what ``overfeat calibrate --method minmax --max-images 8 --no-check`` does); ``cache``:
    the range cache to write (None: none); ``exclude``: Conv nodes kept in float."""
    from overfeat.calibration.pipeline import CalibrateConfig, calibrate
    from overfeat.calibration.ranges import Method

    config = CalibrateConfig(
        Method("minmax"), "shapes:val:8", 8, pyramid=pyramid, flip=flip, exclude=tuple(exclude), cache=cache, check=None
    )
    assert calibrate(str(model), str(output), config).written
    return Path(output)


def gpu_reason() -> str | None:
    """Why GPU tests cannot run here, or None when TensorRT and a CUDA device are present
    (the same check that makes 'overfeat validate' skip TensorRT candidates)."""
    from overfeat.runtime.backends.tensorrt import unavailable

    return unavailable()


def requires_gpu(test):
    """Mark a test ``gpu`` and skip it, with the reason, where TensorRT or a GPU is absent."""
    reason = gpu_reason()
    return pytest.mark.gpu(pytest.mark.skipif(reason is not None, reason=reason or "")(test))
