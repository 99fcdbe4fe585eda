"""``overfeat build`` without TensorRT: planning, the order of writes, the manifest, the CLI.

TensorRT cannot run on this machine, so the build's bookkeeping is driven by a stand-in
compiler that returns bytes derived from each spec (and can be told to fail); the plans'
shapes are checked against ONNX Runtime running the same ONNX file.
"""

from __future__ import annotations

import hashlib
import json
import shlex

import numpy as np
import pytest

from overfeat.cli import build_parser, main
from overfeat.engines.build import MANIFEST, build_engines
from overfeat.engines.plan import BuildOptions, DynamicRange, EngineSpec, format_bytes, parse_bytes, plan_build
from overfeat.errors import BuildError, InputError, ModelError
from overfeat.runtime.manifest import Manifest, build_arguments, rebuild_command, verify_plans
from tests.conftest import needs_export

pytestmark = needs_export

PAPER = [(245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569)]


class StandIn:
    """Builds 'plans' that are the spec as JSON; fails on the plan named in ``fail_on``."""

    tensorrt_version, gpu_name, compute_capability = "10.13.3.9", "NVIDIA A10", "8.6"

    def __init__(self, fail_on: str | None = None, tag: str = "") -> None:
        self.fail_on, self.tag, self.built = fail_on, tag, []

    def build(self, spec: EngineSpec) -> bytes:
        if spec.file == self.fail_on:
            raise BuildError(f"TensorRT could not build {spec.file}: out of memory")
        self.built.append(spec.file)
        return json.dumps([self.tag, spec.file, spec.min_shape, spec.opt_shape, spec.max_shape]).encode()

    def timing_cache(self) -> bytes:
        return f"cache after {len(self.built)} plans".encode()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4GiB", 4 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1GB", 10**9),
        ("1.5 gib", int(1.5 * 1024**3)),
        ("1000", 1000),
        ("64kib", 65536),
    ],
)
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "4XB", "-1GiB", "GiB", "0", "4 GiB extra"])
def test_parse_bytes_refuses(text):
    with pytest.raises(InputError, match="expected"):
        parse_bytes(text)


def test_format_bytes():
    assert [format_bytes(v) for v in (4 * 1024**3, 1536 * 1024**2, 2048, 10)] == ["4 GiB", "1.5 GiB", "2 KiB", "10 B"]


def test_dynamic_range():
    d = DynamicRange.parse("245x245:317x389:569x569")
    assert (d.min, d.opt, d.max) == ((245, 245), (317, 389), (569, 569)) and str(d) == "245x245:317x389:569x569"
    assert d.covers((569, 245)) and not d.covers((570, 300))
    for bad in ("245x245:317x389", "300x300:245x245:569x569", "245x245:317x389:300x300", "a:b:c"):
        with pytest.raises(InputError):
            DynamicRange.parse(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch": 0}, "--batch 0: expected a positive integer"),
        ({"opt_level": 6}, "--opt-level 6: expected 0 to 5"),
        ({"hardware_compatibility": "turing+"}, "--hardware-compat 'turing+': expected one of"),
        ({"orientations": "portrait"}, "--orientations 'portrait'"),
        ({"pyramid": "aspect"}, "--pyramid aspect gives every image its own sizes"),
    ],
)
def test_options_refused(options, message):
    """The library names its parameter (`batch`); the command line prints it as its flag."""
    from overfeat.cli.args import as_flags

    with pytest.raises(InputError) as refused:
        BuildOptions(**options)
    name = next(iter(options))
    assert f"`{name}`" in str(refused.value)
    assert message in as_flags(str(refused.value))


def test_paper_plan_both_orientations(small_onnx):
    path, _ = small_onnx
    plan = plan_build(path, BuildOptions())
    sizes = [e.min_shape[2:] for e in plan.engines]
    assert sizes == PAPER + [(w, h) for h, w in PAPER[1:]]  # 245x245 once
    for e in plan.engines:
        assert e.static and e.min_shape[:2] == (2, 3) and e.file == f"scale_{e.min_shape[2]}x{e.min_shape[3]}_b2.plan"
    assert plan.engines[1].outputs == {"scores": (2, 5, 6, 9), "boxes": (2, 20, 6, 9), "det_scores": (2, 6, 6, 9)}
    assert plan.precision == "fp32"
    landscape = plan_build(path, BuildOptions(orientations="landscape", batch=1))
    assert [e.min_shape for e in landscape.engines] == [(1, 3, *s) for s in PAPER]
    given = plan_build(path, BuildOptions(pyramid=[(300, 333)]))
    assert [e.file for e in given.engines] == ["scale_300x333_b2.plan"]  # given sizes are taken as given
    three = plan_build(path, BuildOptions(pyramid=3, orientations="landscape"))
    assert [e.min_shape[2:] for e in three.engines] == [PAPER[0], PAPER[2], PAPER[5]]  # the runtime's choice of 3


def test_planned_outputs_are_what_onnxruntime_gives(small_onnx):
    import onnxruntime as ort

    path, _ = small_onnx
    plan = plan_build(path, BuildOptions(pyramid=[(245, 245), (281, 317), (389, 317)], batch=1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for spec in plan.engines:
        got = session.run(None, {"image": rng.standard_normal(spec.min_shape).astype(np.float32)})
        assert {o.name: v.shape for o, v in zip(session.get_outputs(), got, strict=True)} == spec.outputs


def test_dynamic_plan(small_onnx):
    path, _ = small_onnx
    plan = plan_build(path, BuildOptions(dynamic=DynamicRange.parse("245x245:317x389:569x569")))
    (e,) = plan.engines
    assert e.file == "dynamic_245x245-569x569_b1-2.plan" and not e.static
    assert (e.min_shape, e.opt_shape, e.max_shape) == ((1, 3, 245, 245), (2, 3, 317, 389), (2, 3, 569, 569))
    assert e.outputs["scores"] == ("1..2", 5, "3..30", "3..30")
    with pytest.raises(
        InputError, match="does not cover pyramid sizes 497x425, 569x461; widen MIN:OPT:MAX or pass `orientations` landscape"
    ):
        plan_build(path, BuildOptions(dynamic=DynamicRange.parse("245x245:317x389:461x569")))
    with pytest.raises(InputError, match="below the model's 221-pixel window"):
        plan_build(path, BuildOptions(pyramid="aspect", dynamic=DynamicRange.parse("200x200:317x389:569x569")))
    assert plan_build(path, BuildOptions(pyramid="aspect", dynamic=DynamicRange.parse("221x221:317x389:800x800"))).engines[
        0
    ].max_shape == (2, 3, 800, 800)


def test_fixed_onnx_shapes_are_checked(small_onnx, tmp_path):
    import onnx

    path, _ = small_onnx
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = 1
    fixed = tmp_path / "batch1.onnx"
    onnx.save(model, str(fixed))
    with pytest.raises(
        InputError, match="has a fixed batch of 1, the engines need batch 2; pass `batch` 1 or export with a dynamic batch"
    ):
        plan_build(fixed, BuildOptions())
    assert len(plan_build(fixed, BuildOptions(batch=1)).engines) == 11
    dims[2].dim_value, dims[3].dim_value = 245, 245
    onnx.save(model, str(fixed))
    with pytest.raises(InputError, match="fixed height of 245, the engines need"):
        plan_build(fixed, BuildOptions(batch=1))
    assert len(plan_build(fixed, BuildOptions(batch=1, pyramid=[(245, 245)])).engines) == 1
    model.graph.input[0].name = "pixels"
    onnx.save(model, str(fixed))
    with pytest.raises(ModelError, match="has no input named 'image'"):
        plan_build(fixed, BuildOptions(batch=1, pyramid=[(245, 245)]))


def test_build_writes_plans_then_the_manifest(small_onnx, tmp_path):
    path, _ = small_onnx
    plan = plan_build(path, BuildOptions(orientations="landscape", workspace=parse_bytes("2GiB"), opt_level=4))
    out = tmp_path / "engines"
    compiler = StandIn()
    manifest = build_engines(plan, out, compiler)
    assert compiler.built == [e.file for e in plan.engines]
    loaded = Manifest.load(out / MANIFEST)
    assert loaded.to_dict() == manifest.to_dict()
    verify_plans(loaded)
    assert loaded.onnx_sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and loaded.meta == plan.meta
    assert (loaded.tensorrt_version, loaded.gpu_name, loaded.compute_capability, loaded.precision) == (
        "10.13.3.9",
        "NVIDIA A10",
        "8.6",
        "fp32",
    )
    assert loaded.build["workspace"] == 2 * 1024**3 and loaded.build["opt_level"] == 4 and loaded.build["batch"] == 2
    for entry, spec in zip(loaded.plans, plan.engines, strict=True):
        assert json.loads((out / entry.file).read_bytes())[1] == spec.file
        assert (entry.min_shape, entry.max_shape, dict(entry.outputs)) == (spec.min_shape, spec.max_shape, spec.outputs)
    assert loaded.plan_for((2, 3, 389, 461)).file == "scale_389x461_b2.plan"
    assert (out / "timing.cache").read_bytes() == b"cache after 6 plans"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "timing.cache", *compiler.built])  # no temporary files left


def test_failed_first_plan_leaves_the_previous_build_whole(small_onnx, tmp_path):
    path, _ = small_onnx
    plan = plan_build(path, BuildOptions(orientations="landscape"))
    out = tmp_path / "engines"
    build_engines(plan, out, StandIn(tag="old"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(BuildError, match="out of memory"):
        build_engines(plan, out, StandIn(fail_on=plan.engines[0].file, tag="new"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    verify_plans(Manifest.load(out / MANIFEST))


def test_failure_midway_leaves_an_unfinished_build(small_onnx, tmp_path):
    path, _ = small_onnx
    plan = plan_build(path, BuildOptions(orientations="landscape"))
    out = tmp_path / "engines"
    build_engines(plan, out, StandIn(tag="old"))
    with pytest.raises(BuildError):
        build_engines(plan, out, StandIn(fail_on=plan.engines[3].file, tag="new"))
    with pytest.raises(ModelError, match="a directory without manifest.json is an unfinished build"):
        Manifest.load(out / MANIFEST)
    tags = [json.loads((out / e.file).read_bytes())[0] for e in plan.engines]
    assert tags == ["new"] * 3 + ["old"] * 3  # each plan replaced only by one that was built
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    build_engines(plan, out, StandIn(tag="again"))
    verify_plans(Manifest.load(out / MANIFEST))


def test_rebuild_removes_only_the_plans_it_dropped(small_onnx, tmp_path):
    path, _ = small_onnx
    out = tmp_path / "engines"
    both = build_engines(plan_build(path, BuildOptions()), out, StandIn())
    (out / "notes.txt").write_text("mine")
    landscape = build_engines(plan_build(path, BuildOptions(orientations="landscape")), out, StandIn())
    assert len(both.plans) == 11 and len(landscape.plans) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "timing.cache", "notes.txt", *(p.file for p in landscape.plans)]
    )


def test_leftovers_of_a_failed_build_are_removed_by_the_next(small_onnx, tmp_path):
    path, _ = small_onnx
    out = tmp_path / "engines"
    build_engines(plan_build(path, BuildOptions()), out, StandIn())  # 11 plans
    landscape = plan_build(path, BuildOptions(orientations="landscape"))
    with pytest.raises(BuildError):
        build_engines(landscape, out, StandIn(fail_on=landscape.engines[2].file))  # manifest gone, portrait plans left
    done = build_engines(landscape, out, StandIn())
    assert sorted(p.name for p in out.glob("*.plan")) == sorted(p.file for p in done.plans)


def test_a_bad_timing_cache_path_is_refused_before_anything_is_replaced(small_onnx, tmp_path):
    path, _ = small_onnx
    out = tmp_path / "engines"
    build_engines(plan_build(path, BuildOptions(pyramid=[(245, 245)])), out, StandIn(tag="old"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "afile").write_text("a file, not a folder")
    with pytest.raises(InputError, match="`timing_cache` .*afile is not a directory"):
        build_engines(
            plan_build(path, BuildOptions(pyramid=[(245, 245)], timing_cache=str(tmp_path / "afile" / "t.cache"))),
            out,
            StandIn(tag="new"),
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_output_must_be_a_directory(small_onnx, tmp_path):
    path, _ = small_onnx
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, expected a directory"):
        build_engines(plan_build(path, BuildOptions(pyramid=[(245, 245)])), tmp_path / "file", StandIn())


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--pyramid", "245x245,300x333", "--batch", "1"],
        ["--dynamic", "245x245:317x389:569x569", "--workspace", "3GiB", "--opt-level", "5"],
        ["--orientations", "landscape", "--hardware-compat", "ampere+", "--version-compatible"],
        ["--pyramid", "3", "--hardware-compat", "same-compute-capability"],
    ],
)
def test_rebuild_command_reproduces_the_options(small_onnx, tmp_path, flags):
    """The command a refused manifest prints parses back into the options it was built with."""
    from overfeat.cli.build import build_options as _build_options

    path, _ = small_onnx
    args = build_parser().parse_args(["build", "--model", str(path), "--output", str(tmp_path / "e"), *flags])
    options = _build_options(args)
    manifest = build_engines(plan_build(path, options), tmp_path / "e", StandIn())
    command = shlex.split(rebuild_command(manifest))
    assert command[:2] == ["overfeat", "build"]
    again = _build_options(build_parser().parse_args(command[1:]))
    assert {**again.to_dict(), "timing_cache": None} == {**options.to_dict(), "timing_cache": None}
    assert build_arguments(manifest.build) == command[6:]


def test_cli_dry_run_prints_the_plan_and_writes_nothing(small_onnx, tmp_path, capsys):
    path, _ = small_onnx
    out = tmp_path / "engines"
    assert main(["build", "--model", str(path), "--output", str(out), "--dry-run", "--pyramid", "2"]) == 0
    text = capsys.readouterr().out
    assert "3 static plans, one per size" in text and "scale_461x569_b2.plan" in text and "scores 2x5x21x30" in text
    assert not out.exists()


def test_cli_build_errors(small_onnx, tmp_path, capsys):
    path, _ = small_onnx
    out = tmp_path / "engines"
    assert main(["build", "--model", str(tmp_path / "none.onnx"), "--output", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["build", "--model", str(path), "--output", str(out), "--workspace", "lots"]) == 2
    assert "size 'lots': expected a number with an optional unit" in capsys.readouterr().err
    assert main(["build", "--model", str(path), "--output", str(out), "--dynamic", "245x245"]) == 2
    assert "expected MIN:OPT:MAX" in capsys.readouterr().err
    from importlib.util import find_spec

    if find_spec("tensorrt") is None:
        assert main(["build", "--model", str(path), "--output", str(out)]) == 1
        assert "TensorRT is not installed here" in capsys.readouterr().err
        assert not out.exists()


def test_plans_the_manifest_could_not_record_are_refused_before_any_build(small_onnx, tmp_path, capsys):
    """The manifest's bounds (plans, sides, batch) are checked when the build is planned, not
    after the engines are built."""
    from overfeat.cli.args import as_flags
    from overfeat.runtime.manifest import MAX_DIM, MAX_PLANS

    path, _ = small_onnx
    with pytest.raises(InputError, match=f"`batch` {MAX_DIM + 1}: expected a positive integer up to {MAX_DIM}"):
        BuildOptions(batch=MAX_DIM + 1)
    with pytest.raises(InputError, match=f"245, {MAX_DIM + 1}|245x{MAX_DIM + 1}"):  # the runtime's pyramid may refuse it first
        plan_build(path, BuildOptions(pyramid=[(245, MAX_DIM + 1)], batch=1))
    with pytest.raises(InputError) as refused:
        plan_build(path, BuildOptions(pyramid="aspect", dynamic=DynamicRange.parse(f"245x245:300x300:800x{MAX_DIM + 1}")))
    assert (
        as_flags(str(refused.value))
        == f"--dynamic asks for the size 245x245..800x{MAX_DIM + 1}; each side must be at most {MAX_DIM}"
    )
    many = [(245, 245 + i) for i in range(MAX_PLANS + 1)]
    with pytest.raises(InputError, match=f"{MAX_PLANS + 1} (plans|sizes)"):  # the plans, or the runtime's pyramid, first
        plan_build(path, BuildOptions(pyramid=many, batch=1))
    out = tmp_path / "engines"
    assert main(["build", "--model", str(path), "--output", str(out), "--pyramid", f"245x{MAX_DIM + 1}", "--batch", "1"]) == 2
    assert f"{MAX_DIM + 1}" in capsys.readouterr().err and not out.exists()


def test_a_built_manifest_is_read_back_and_a_forged_one_is_not(small_onnx, tmp_path):
    """What build_engines writes passes every check of Manifest.load; the same manifest with a
    plan renamed to a path outside the directory (its sha256 kept) is refused."""
    path, _ = small_onnx
    out = tmp_path / "engines"
    built = build_engines(plan_build(path, BuildOptions(pyramid=[(245, 245)], version_compatible=True)), out, StandIn())
    verify_plans(Manifest.load(out / MANIFEST))
    data = json.loads((out / MANIFEST).read_text())
    (tmp_path / "elsewhere.plan").write_bytes((out / built.plans[0].file).read_bytes())
    data["plans"][0]["file"] = "../elsewhere.plan"
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"plans\[0\].file '../elsewhere.plan' is not a plain file name"):
        Manifest.load(out / MANIFEST)


def test_infer_passes_allow_host_code_to_the_backend(small_onnx, capsys):
    """--allow-host-code reaches the backend: ONNX Runtime, which runs no engine, refuses it."""
    path, _ = small_onnx
    assert main(["infer", "none.png", "--model", str(path), "--allow-host-code"]) == 2
    assert "backend 'onnxruntime' takes no 'allow_host_code' option" in capsys.readouterr().err
