"""The OpenVINO backend against ONNX Runtime on the same files: fp32, bf16 and the Q/DQ INT8 file,
every pyramid size, landscape and portrait, batch 1 and 2; threads; bad files; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from overfeat.cli import main
from overfeat.errors import BackendError, InputError, ModelError
from overfeat.runtime import Predictor
from overfeat.runtime.backends import REGISTRY, create_backend
from tests.conftest import cli, minmax_int8, needs_export, words
from tests.threads import assert_threads_match

NO_OPENVINO = None if REGISTRY["openvino"].is_available() else REGISTRY["openvino"].needs
pytestmark = [needs_export, pytest.mark.skipif(NO_OPENVINO is not None, reason=f"OpenVINO: {NO_OPENVINO}")]


def _bf16_here() -> bool:
    from overfeat.runtime.backends.openvino import has_bf16

    return NO_OPENVINO is None and has_bf16()


needs_bf16 = pytest.mark.skipif(not _bf16_here(), reason="this CPU has no bf16 arithmetic for OpenVINO (AMX or AVX-512 BF16)")


@pytest.fixture(scope="module")
def int8(small_onnx, tmp_path_factory):
    """The small model in INT8 (minmax on 8 generated images), written without the check."""
    return minmax_int8(small_onnx[0], tmp_path_factory.mktemp("openvino") / "small.int8.onnx", pyramid=2, flip=False)


def _feeds(meta, seed: int):
    """Every pyramid size, landscape and portrait, batch 2 and 1."""
    rng = np.random.default_rng(seed)
    sizes = [*meta.pyramid, *[(w, h) for h, w in meta.pyramid[1:]]]
    return [rng.normal(0, 1, (2 - i % 2, 3, h, w)).astype(np.float32) for i, (h, w) in enumerate(sizes)]


def _errors(reference, candidate, feeds):
    """Per output: the largest and the mean absolute difference, each over the reference's range."""
    worst: dict[str, list[float]] = {}
    for x in feeds:
        a, b = reference.run({"image": x}), candidate.run({"image": x})
        for name in reference.output_names:
            assert b[name].shape == a[name].shape and b[name].dtype == np.float32
            span = float(np.abs(a[name]).max())
            diff = np.abs(a[name].astype(np.float64) - b[name])
            stats = worst.setdefault(name, [0.0, 0.0])
            stats[0] = max(stats[0], float(diff.max()) / span)
            stats[1] = max(stats[1], float(diff.mean()) / span)
    return worst


def test_fp32_equals_onnxruntime_at_every_size(small_onnx):
    path, _ = small_onnx
    ort, ov = create_backend(path, "onnxruntime"), create_backend(path, "openvino")
    assert ov.meta == ort.meta and ov.execution_precision == "fp32" and ov.name == "openvino"
    for name, (largest, _) in _errors(ort, ov, _feeds(ort.meta, 0)).items():
        assert largest < 1e-4, f"{name}: {largest:.2e} of its range"


def test_int8_is_as_close_to_onnxruntime_int8_as_int8_may_be(int8):
    """OpenVINO runs the same quantized graph as ONNX Runtime with its own int8 kernels: their
    outputs are held to validate's INT8 tolerance (mean error within 2.5% of the range)."""
    from overfeat.engines.validate import DEFAULT_TOLERANCES

    ort, ov = create_backend(int8, "onnxruntime"), create_backend(int8, "openvino")
    assert ov.execution_precision == "int8"
    for name, (_, mean) in _errors(ort, ov, _feeds(ort.meta, 1)).items():
        assert mean < DEFAULT_TOLERANCES["int8"].atol, f"{name}: mean error {mean:.2e} of its range"


@needs_bf16
def test_bf16_is_within_its_tolerance_of_fp32(small_onnx):
    from overfeat.engines.validate import DEFAULT_TOLERANCES

    path, _ = small_onnx
    ort, ov = create_backend(path, "onnxruntime"), create_backend(path, "openvino", precision="bf16")
    assert ov.execution_precision == "bf16"
    errors = _errors(ort, ov, _feeds(ort.meta, 2))
    for name, (largest, _) in errors.items():
        assert largest < DEFAULT_TOLERANCES["bf16"].atol, f"{name}: {largest:.2e} of its range"
    assert max(e[0] for e in errors.values()) > 1e-5, "bf16 rounds: the outputs cannot equal fp32's"


def test_threads_give_the_sequential_results(small_onnx):
    path, _ = small_onnx
    rng = np.random.default_rng(3)
    images = [
        rng.integers(0, 256, (int(rng.integers(240, 400)), int(rng.integers(240, 400)), 3), dtype=np.uint8) for _ in range(6)
    ]
    with Predictor.from_path(path, "openvino", pyramid=2) as predictor:
        assert_threads_match(lambda image: predictor.localize(image).to_dict(), images)


def test_bad_files_and_options(small_onnx, tmp_path):
    import onnx

    path, _ = small_onnx
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(ModelError, match="could not be read by OpenVINO"):
        create_backend(tmp_path / "text.onnx", "openvino")
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="overfeat.format_version"):
        create_backend(tmp_path / "bare.onnx", "openvino")
    with pytest.raises(InputError, match="execution precision 'fp16': expected one of fp32, bf16"):
        create_backend(path, "openvino", precision="fp16")
    with pytest.raises(InputError, match="backend 'onnxruntime' takes no 'precision' option"):
        create_backend(path, "onnxruntime", precision="bf16")
    backend = create_backend(path, "openvino")
    with pytest.raises(InputError, match=r"got float64 \[1, 3, 245, 245\], expected float32"):
        backend.run({"image": np.zeros((1, 3, 245, 245))})
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.run({"image": np.zeros((1, 3, 245, 245), np.float32)})


def test_infer_records_the_backend_and_its_precision(small_onnx, tmp_path, capsys):
    path, _ = small_onnx
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(4).integers(0, 256, (260, 300, 3), dtype=np.uint8)).save(image)
    precision = "bf16" if _bf16_here() else "fp32"
    assert (
        cli(
            "infer",
            image,
            "--model",
            path,
            "--backend openvino --precision",
            precision,
            "--pyramid 2 --json",
            tmp_path / "r.json",
        )
        == 0
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["backend"], report["precision"]) == ("openvino", precision)
    assert main(["infer", str(image), "--model", str(path), "--precision", "bf16"]) == 2
    assert "--precision bf16 sets OpenVINO's execution precision: add --backend openvino" in capsys.readouterr().err


def test_validate_takes_openvino_candidates(small_onnx, int8, tmp_path):
    path, _ = small_onnx
    candidates = [f"{path}@openvino", f"{int8}@openvino"] + ([f"{path}@openvino:bf16"] if _bf16_here() else [])
    args = words("validate --reference", path, "--random 2 --pyramid 2 --json", tmp_path / "v.json", "--quiet")
    assert main([*args, *(a for c in candidates for a in ("--candidate", c))]) == 0
    report = json.loads((tmp_path / "v.json").read_text())
    assert [(c["kind"], c["precision"], c["status"]) for c in report["candidates"]] == [
        ("openvino", "fp32", "pass"),
        ("openvino", "int8", "pass"),
        *([("openvino", "bf16", "pass")] if _bf16_here() else []),
    ]
    for bad in (f"{path}@tensorrt", f"{int8}@openvino:bf16"):
        with pytest.raises(InputError, match="openvino"):
            from overfeat.engines.validate import describe

            describe(bad)


def test_bench_candidates_and_ceilings(small_onnx):
    from overfeat.bench.ceiling import openvino_rate
    from overfeat.bench.suite import arithmetic, candidates_from

    path, _ = small_onnx
    rows = candidates_from([str(path), f"{path}@openvino", f"{path}@openvino:bf16"], None)
    assert [(c.backend, c.precision, c.label) for c in rows] == [
        ("onnxruntime", None, "onnxruntime:accurate.onnx"),
        ("openvino", None, "openvino:accurate.onnx"),
        ("openvino", "bf16", "openvino:accurate.onnx bf16"),
    ]
    assert [arithmetic(p) for p in ("fp32", "fp16", "bf16", "int8", "int8/bf16")] == ["fp32", "fp32", "bf16", "int8", "int8"]
    assert openvino_rate("fp32", n=256, depth=2, repeat=1) > 0
    with pytest.raises(InputError, match="FILE.onnx@openvino"):
        candidates_from([f"{path}@openvino:fp16"], None)


@needs_bf16
def test_the_gate_judges_bf16_execution(shapes_onnx, tmp_path, capsys):
    """``convert --precision bf16`` runs the fp32 file in OpenVINO bf16 against ONNX Runtime fp32
    on labelled images and writes only the report."""
    args = words(
        "convert --precision bf16 --model", shapes_onnx, "--check shapes:test:12 --check-images 12 --pyramid 2 --no-flip --quiet"
    )
    code = main([*args, "--report", str(tmp_path / "bf16.json")])
    report = json.loads((tmp_path / "bf16.json").read_text())
    assert (report["precision"], report["output"], report["written"]) == ("bf16", None, False)
    assert code == (0 if report["check"]["passed"] else 1)
    assert report["check"]["agreement"]["top1"] >= 0.9 and set(report["check"]["metrics"]) == {"fp32", "candidate"}
    assert "nothing to write" in capsys.readouterr().out
    assert main([*args, "--output", str(tmp_path / "m.bf16.onnx")]) == 2
    assert "bf16 writes no model" in capsys.readouterr().err


def test_calibrate_can_judge_int8_as_openvino_runs_it(shapes_onnx, tmp_path):
    """--check-backend openvino: the gate runs the INT8 candidate in OpenVINO (the fp32 reference
    in ONNX Runtime) and the report says so."""
    report = tmp_path / "int8.check.json"
    code = cli(
        "calibrate --model",
        shapes_onnx,
        "--images shapes:val:8 --max-images 8 --method minmax --check shapes:test:10 --check-images 10 --check-backend openvino --no-cache --pyramid 2 --no-flip --quiet --output",
        tmp_path / "m.int8.onnx",
        "--report",
        report,
    )
    check = json.loads(report.read_text())["check"]
    assert (check["backend"], check["precision"]) == ("openvino", "int8")
    assert code == (0 if check["passed"] else 1) and (tmp_path / "m.int8.onnx").exists() == check["passed"]
