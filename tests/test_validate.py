"""``overfeat validate`` as a CI step: exit codes, the JSON report, per-precision tolerances,
TensorRT candidates skipped (never passed) without a GPU, and Polygraphy's verdicts checked
against a plain NumPy count of the elements outside tolerance."""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pytest

from overfeat.cli import main
from overfeat.engines.validate import DEFAULT_TOLERANCES, Tolerance, ValidateConfig, validate
from overfeat.errors import InputError
from tests.conftest import CHECKPOINT, cli, needs_export

pytestmark = [needs_export, pytest.mark.skipif(find_spec("polygraphy") is None, reason="needs polygraphy (the 'validate' extra)")]

FAST = ["--pyramid", "2", "--max-images", "3", "--quiet"]


def _variant(source, path, *, scale: float = 0.0, precision: str | None = None, seed: int = 0, classes=None):
    """A copy of ``source`` with its last conv's weights perturbed by ``scale`` (relative) and,
    optionally, another precision or other class names in its metadata."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    if scale:
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        weights = {i.name: i for i in model.graph.initializer}
        tensor = weights[convs[-1].input[1]]
        w = numpy_helper.to_array(tensor)
        rng = np.random.default_rng(seed)
        tensor.CopyFrom(
            numpy_helper.from_array((w + scale * np.abs(w).max() * rng.standard_normal(w.shape)).astype(w.dtype), tensor.name)
        )
    for prop in model.metadata_props:
        if prop.key == "overfeat.precision" and precision:
            prop.value = json.dumps(precision)
        if prop.key == "overfeat.classes" and classes:
            prop.value = json.dumps(classes)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def variants(shapes_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    return {
        "same": _variant(shapes_onnx, out / "same.onnx"),
        "off": _variant(shapes_onnx, out / "off.onnx", scale=0.01),
        "off_int8": _variant(shapes_onnx, out / "off_int8.onnx", scale=0.01, precision="int8"),
    }


def test_ci_run_passes_exit_0_with_a_json_report(shapes_onnx, variants, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = cli(
        "validate --reference",
        shapes_onnx,
        "--candidate",
        CHECKPOINT,
        "--candidate",
        variants["same"],
        "--images shapes:test:3 --json",
        report,
        FAST,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED: 2 passed, 0 failed, 0 skipped" in out and len(out.splitlines()) <= 24
    data = json.loads(report.read_text())
    assert (
        data["passed"] and data["images"] == 3 and data["batches"] == 3 * 2
    )  # 2 scales per image; a batch is the image and its mirror
    torch_run, onnx_run = data["candidates"]
    assert (torch_run["kind"], torch_run["precision"], torch_run["status"]) == ("torch", "fp32", "pass")
    assert onnx_run["kind"] == "onnxruntime" and all(o["max_abs"] == 0 for o in onnx_run["outputs"].values())  # the same file
    assert 0 < torch_run["outputs"]["scores"]["max_abs"] < 1e-3  # PyTorch and ONNX Runtime differ only in rounding
    assert onnx_run["agreement"]["top1"] == 1.0 and onnx_run["agreement"]["top5_overlap"] == 1.0


def test_a_candidate_outside_tolerance_exits_1(shapes_onnx, variants, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = cli(
        "validate --reference",
        shapes_onnx,
        "--candidate",
        variants["off"],
        "--candidate",
        variants["same"],
        "--random 2 --json",
        report,
        FAST,
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: 1 passed, 1 failed, 0 skipped" in out and "outside elemwise tolerance" in out
    off = json.loads(report.read_text())["candidates"][0]
    assert off["status"] == "fail" and not all(o["passed"] for o in off["outputs"].values())


def test_the_candidates_precision_picks_its_tolerance(shapes_onnx, variants):
    """The same perturbation fails as fp32 (elementwise) and passes as int8 (mean error)."""
    config = ValidateConfig(random=2, pyramid=2)
    report = validate(str(shapes_onnx), [str(variants["off"]), str(variants["off_int8"])], config)
    fp32, int8 = report.candidates
    assert (fp32.precision, fp32.status, fp32.tolerance) == ("fp32", "fail", DEFAULT_TOLERANCES["fp32"])
    assert (int8.precision, int8.status, int8.tolerance) == ("int8", "pass", DEFAULT_TOLERANCES["int8"])
    numbers = lambda report: {k: (v["max_abs"], v["mean_abs"]) for k, v in report.outputs.items()}  # noqa: E731
    assert numbers(fp32) == numbers(int8)  # the same errors, judged by different tolerances
    strict = validate(
        str(shapes_onnx),
        [str(variants["off_int8"])],
        ValidateConfig(random=2, pyramid=2, tolerances={"int8": Tolerance("mean", 1e-6, 0)}),
    )
    assert strict.candidates[0].status == "fail"


def test_polygraphy_verdicts_equal_a_numpy_count(shapes_onnx, variants):
    """Failed batches per output as Polygraphy judged them == elements with |d| > atol and
    |d| / |ref| > rtol, counted directly on the runtime's own outputs."""
    from overfeat.runtime import Predictor

    tol = Tolerance("elemwise", 2e-3, 5e-3)
    config = ValidateConfig(random=3, pyramid=2, seed=4, tolerances={"fp32": tol})
    report = validate(str(shapes_onnx), [str(variants["off"])], config)
    rng = np.random.default_rng(4)
    sizes = rng.integers(221, 443, (3, 2))
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    with Predictor.from_path(shapes_onnx, pyramid=2) as ref, Predictor.from_path(variants["off"], pyramid=2) as cand:
        maps = [(a.outputs, b.outputs) for image in images for a, b in zip(ref.dense(image), cand.dense(image), strict=True)]
    for name, stats in report.candidates[0].outputs.items():
        largest = max(np.abs(r[name]).max() for r, _ in maps)
        assert stats["atol"] == pytest.approx(tol.atol * largest)
        failed = 0
        for r, c in maps:
            d = np.abs(c[name].astype(np.float64) - r[name])
            rel = d / np.where(r[name] == 0, 2e-16, np.abs(r[name]))
            failed += bool(((d > stats["atol"]) & (rel > tol.rtol)).any())
        assert stats["failed_batches"] == failed
        assert stats["max_abs"] == pytest.approx(max(np.abs(c[name].astype(np.float64) - r[name]).max() for r, c in maps))
    assert (
        0 < report.candidates[0].outputs["scores"]["failed_batches"] < len(maps)
        or report.candidates[0].outputs["det_scores"]["failed_batches"] > 0
    )


def test_a_candidate_that_cannot_run_fails_alone(shapes_onnx, variants, tmp_path, capsys):
    """A fixed batch of 2 cannot take --no-flip's batch of 1: that candidate fails with the
    reason, the others are still judged, and the run exits 1 (no traceback)."""
    import onnx

    model = onnx.load(str(shapes_onnx))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    fixed = tmp_path / "batch2.onnx"
    onnx.save(model, str(fixed))
    code = cli(
        "validate --reference", shapes_onnx, "--candidate", fixed, "--candidate", variants["same"], "--random 1 --no-flip", FAST
    )
    out = capsys.readouterr().out
    assert code == 1 and "FAIL: could not run:" in out and "1 passed, 1 failed" in out


def test_task_agreement_gates_only_when_asked(shapes_onnx, variants):
    loose = validate(str(shapes_onnx), [str(variants["off_int8"])], ValidateConfig(random=2, pyramid=2))
    overlap = loose.candidates[0].agreement["top5_overlap"]
    assert loose.candidates[0].status == "pass" and 0 <= overlap <= 1
    judged = validate(
        str(shapes_onnx), [str(variants["off_int8"])], ValidateConfig(random=2, pyramid=2, min_top5_overlap=1.0, min_box_iou=1.0)
    )
    if overlap < 1.0 or loose.candidates[0].agreement.get("localize_iou", 1.0) < 1.0:
        assert judged.candidates[0].status == "fail" and (
            "top-5 overlap" in judged.candidates[0].reason or "box IoU" in judged.candidates[0].reason
        )
    else:
        assert judged.candidates[0].status == "pass"


def test_tensorrt_candidates_are_skipped_not_passed(shapes_onnx, tmp_path, capsys):
    from overfeat.engines.build import build_engines
    from overfeat.engines.plan import BuildOptions, plan_build
    from overfeat.runtime.backends.tensorrt import unavailable
    from tests.test_engines import StandIn

    if unavailable() is None:
        pytest.skip("TensorRT and a GPU are present: the skip path does not apply")
    build_engines(plan_build(shapes_onnx, BuildOptions(pyramid=2, orientations="landscape")), tmp_path / "engines", StandIn())
    manifest = tmp_path / "engines" / "manifest.json"
    report = tmp_path / "report.json"
    args = ("validate --reference", shapes_onnx, "--candidate", manifest, "--candidate", CHECKPOINT, "--random 1 --json", report)
    assert cli(*args, FAST) == 0
    out = capsys.readouterr().out
    assert "SKIP: TensorRT and cuda-python are not installed here" in out and "1 passed, 0 failed, 1 skipped" in out
    skipped = json.loads(report.read_text())["candidates"][0]
    assert (skipped["status"], skipped["kind"], skipped["outputs"]) == ("skip", "tensorrt", {})
    assert cli(*args, FAST, "--fail-on-skip") == 1
    assert "(skips fail the run: --fail-on-skip)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "missing.onnx", "--random", "1"], "model missing.onnx does not exist"),
        (["--candidate", "{model}", "--random", "1", "--tolerance", "fp64=mean:1:0"], "expected PRECISION=STAT:ATOL:RTOL"),
        (["--candidate", "{model}", "--random", "1", "--tolerance", "fp16=mode:1:0"], "tolerance statistic 'mode'"),
        (["--candidate", "{other}", "--random", "1"], "is not a conversion of .*classes differs"),
        (["--candidate", "{model}", "--images", "{empty}"], "no image files|no readable images"),
        (["--candidate", "{model}", "--random", "1", "--min-top5-overlap", "2"], "expected a number within 0..1"),
        (["--candidate", "{text}", "--random", "1"], "expected an ONNX file"),
    ],
)
def test_bad_input_exits_2(shapes_onnx, tmp_path, capsys, args, message):
    import re

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    names = {
        "model": str(shapes_onnx),
        "other": str(_variant(shapes_onnx, tmp_path / "other.onnx", classes=[f"c{i}" for i in range(10)])),
        "empty": str(tmp_path / "empty"),
        "text": str(tmp_path / "notes.txt"),
    }
    args = [a.format(**names) for a in args]
    try:
        code = main(["validate", "--reference", str(shapes_onnx), *args, "--quiet"])
    except SystemExit as exc:  # argparse refuses a malformed option value itself
        code = exc.code
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_inputs_are_required():
    with pytest.raises(InputError, match="`images` DATA or `random` N"):
        ValidateConfig()
    with pytest.raises(InputError, match="one of them"):
        ValidateConfig(images="shapes:test:3", random=2)
    assert Tolerance.parse("fp16=elemwise:0.01:0.02") == ("fp16", Tolerance("elemwise", 0.01, 0.02))


def test_version_compatible_engines_need_allow_host_code(shapes_onnx, tmp_path, capsys):
    """Engines that embed TensorRT code are refused unless --allow-host-code is given; with it the
    candidate is accepted (and skipped here, where TensorRT cannot run)."""
    from overfeat.engines.build import build_engines
    from overfeat.engines.plan import BuildOptions, plan_build
    from overfeat.runtime.backends.tensorrt import unavailable
    from tests.test_engines import StandIn

    if unavailable() is None:
        pytest.skip("TensorRT and a GPU are present: the skip path does not apply")
    options = BuildOptions(pyramid=2, orientations="landscape", version_compatible=True)
    build_engines(plan_build(shapes_onnx, options), tmp_path / "engines", StandIn())
    args = ("validate --reference", shapes_onnx, "--candidate", tmp_path / "engines" / "manifest.json", "--random 1", FAST)
    assert cli(*args) == 2
    assert "--allow-host-code" in capsys.readouterr().err
    assert cli(*args, "--allow-host-code") == 0
    assert "SKIP: TensorRT and cuda-python are not installed here" in capsys.readouterr().out
