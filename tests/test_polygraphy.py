"""The exported ONNX opens in Polygraphy, the tool engineers use to debug TensorRT deployments."""

import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import needs_export

pytestmark = [needs_export, pytest.mark.skipif(find_spec("polygraphy") is None, reason="needs polygraphy (the 'dev' extra)")]


def _polygraphy():
    found = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "polygraphy"]


def test_polygraphy_inspect_model(small_onnx):
    path, _ = small_onnx
    done = subprocess.run([*_polygraphy(), "inspect", "model", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "image" in done.stdout and "det_scores" in done.stdout


def test_polygraphy_run_onnxrt(small_onnx, tmp_path):
    path, _ = small_onnx
    saved = tmp_path / "outputs.json"
    done = subprocess.run(
        [*_polygraphy(), "run", str(path), "--onnxrt", "--input-shapes", "image:[2,3,281,317]", "--save-outputs", str(saved)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout + done.stderr
    from polygraphy.comparator import RunResults

    ((runner, iterations),) = RunResults.load(str(saved)).items()
    assert "onnxrt" in runner
    assert iterations[0]["scores"].shape == (2, 5, 6, 9)
    assert iterations[0]["boxes"].shape == (2, 20, 6, 9)
