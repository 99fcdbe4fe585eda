"""TensorRT on a GPU: engines built by 'overfeat build', loaded by the runtime, checked against
ONNX Runtime. Every test here is marked ``gpu`` and skips, with the reason, where TensorRT or a
CUDA device is absent (``scripts/gpu_check.sh`` runs them on a GPU machine)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tests.conftest import cli, requires_gpu

SIZES = [(245, 245), (281, 317)]


def _build(onnx_path, out, **options):
    from overfeat.engines.build import build_engines, timing_cache_path
    from overfeat.engines.compiler import TensorRTCompiler
    from overfeat.engines.plan import BuildOptions, plan_build

    plan = plan_build(onnx_path, BuildOptions(pyramid=SIZES, **options))
    return build_engines(plan, out, TensorRTCompiler(plan, timing_cache_path(plan, out)))


@pytest.fixture
def fp16_onnx(small_onnx, tmp_path):
    from overfeat.calibration.fp16 import convert_fp16

    out = tmp_path / "model.fp16.onnx"
    convert_fp16(small_onnx[0], out)
    return out


@requires_gpu
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-3), ("fp16", 3e-2)])
def test_built_engines_match_onnxruntime(small_onnx, fp16_onnx, tmp_path, precision, tolerance):
    from overfeat.runtime import Predictor

    source = small_onnx[0] if precision == "fp32" else fp16_onnx
    manifest = _build(source, tmp_path / "engines")
    assert manifest.precision == precision and [p.file for p in manifest.plans] == [
        "scale_245x245_b2.plan",
        "scale_281x317_b2.plan",
    ]
    reference = Predictor.from_path(small_onnx[0], pyramid=SIZES)
    engines = Predictor.from_path(tmp_path / "engines" / "manifest.json", pyramid=SIZES)
    image = np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8)
    for got, expected in zip(engines.dense(image), reference.dense(image), strict=True):
        for name in expected.outputs:
            assert np.abs(got.outputs[name] - expected.outputs[name]).max() <= tolerance * np.abs(expected.outputs[name]).max()


@requires_gpu
def test_timing_cache_is_written_and_reused(small_onnx, tmp_path):
    _build(small_onnx[0], tmp_path / "a", timing_cache=str(tmp_path / "shared.cache"))
    first = (tmp_path / "shared.cache").stat().st_size
    assert first > 0
    _build(small_onnx[0], tmp_path / "b", timing_cache=str(tmp_path / "shared.cache"))
    assert (tmp_path / "shared.cache").stat().st_size >= first


@requires_gpu
def test_engines_built_elsewhere_are_refused_before_loading(small_onnx, tmp_path):
    from overfeat.errors import BackendError
    from overfeat.runtime.backends import create_backend

    _build(small_onnx[0], tmp_path / "engines")
    path = tmp_path / "engines" / "manifest.json"
    data = json.loads(path.read_text())
    data["gpu"]["compute_capability"] = "1.0"
    path.write_text(json.dumps(data))
    with pytest.raises(
        BackendError,
        match=r"built for TensorRT .* \(compute capability 1.0\); this machine has .* Rebuild them here: overfeat build",
    ):
        create_backend(path)


@requires_gpu
def test_validate_passes_engines_and_polygraphy_loads_the_raw_plans(small_onnx, tmp_path):
    _build(small_onnx[0], tmp_path / "engines")
    assert (
        cli(
            "validate --reference",
            small_onnx[0],
            "--candidate",
            tmp_path / "engines" / "manifest.json",
            "--random 2 --pyramid",
            ",".join(f"{h}x{w}" for h, w in SIZES),
            "--fail-on-skip --quiet",
        )
        == 0
    )
    from tests.test_polygraphy import _polygraphy

    done = subprocess.run(
        [*_polygraphy(), "inspect", "model", str(tmp_path / "engines" / "scale_245x245_b2.plan"), "--model-type", "engine"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "image" in done.stdout, done.stdout + done.stderr
