"""The engine manifest and the checks the TensorRT backend makes before loading plans."""

import hashlib
import json

import pytest

from overfeat.errors import BackendError, ModelError
from overfeat.geometry import ACCURATE, spatial_ops
from overfeat.metadata import ModelMeta
from overfeat.runtime.manifest import Manifest, PlanEntry, check_compatible, verify_plans


def _manifest(tmp_path, **build):
    meta = ModelMeta(
        arch="accurate",
        window=221,
        stride=12,
        fine_stride=True,
        geometry=spatial_ops(ACCURATE),
        heads=("cls",),
        classes=("a", "b"),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        pyramid=ACCURATE.pyramid,
    )
    plans = []
    for h, w in ACCURATE.pyramid[:2]:
        data = f"plan {h}x{w}".encode()
        (tmp_path / f"scale_{h}x{w}.plan").write_bytes(data)
        plans.append(
            PlanEntry(
                f"scale_{h}x{w}.plan",
                hashlib.sha256(data).hexdigest(),
                "image",
                (2, 3, h, w),
                (2, 3, h, w),
                (2, 3, h, w),
                {"scores": (2, 2, *meta.map_size((h, w)))},
            )
        )
    dynamic = b"dynamic plan"
    (tmp_path / "dynamic.plan").write_bytes(dynamic)
    plans.append(
        PlanEntry(
            "dynamic.plan", hashlib.sha256(dynamic).hexdigest(), "image", (1, 3, 221, 221), (2, 3, 400, 400), (2, 3, 600, 600)
        )
    )
    manifest = Manifest(
        "model.onnx", "ab" * 32, meta.to_props(), "fp16", "10.13.3.9", "NVIDIA A10", "8.6", dict(build), tuple(plans)
    )
    manifest.save(tmp_path / "manifest.json")
    return Manifest.load(tmp_path / "manifest.json")


def test_round_trip_and_plan_choice(tmp_path):
    m = _manifest(tmp_path)
    assert m.meta.classes == ("a", "b") and m.precision == "fp16"
    assert m.plan_for((2, 3, 245, 245)).file == "scale_245x245.plan"  # the static plan wins
    assert m.plan_for((2, 3, 300, 333)).file == "dynamic.plan"
    with pytest.raises(
        BackendError,
        match=r"no engine for input \[2, 3, 700, 700\]; the engines cover 2x3x245x245, 2x3x281x317, 1x3x221x221..2x3x600x600",
    ):
        m.plan_for((2, 3, 700, 700))
    verify_plans(m)


def test_changed_or_missing_plans_are_refused(tmp_path):
    m = _manifest(tmp_path)
    (tmp_path / "dynamic.plan").write_bytes(b"tampered")
    with pytest.raises(
        ModelError,
        match="plan dynamic.plan has sha256 .* the file changed since the build: rebuild with overfeat build --model model.onnx",
    ):
        verify_plans(m)
    (tmp_path / "dynamic.plan").unlink()
    with pytest.raises(ModelError, match="plan dynamic.plan is missing"):
        verify_plans(m)


@pytest.mark.parametrize(
    ("build", "version", "cc", "ok"),
    [
        ({}, "10.13.3.9", "8.6", True),
        ({}, "10.13.3.9.post1", "8.6", True),
        ({}, "10.14.1.48", "8.6", False),  # plans load only with the TensorRT that built them
        ({}, "10.13.3.9", "8.9", False),  # ... and only on that GPU architecture
        ({"version_compatible": True}, "11.4.0.106", "8.6", True),
        ({"version_compatible": True}, "10.8.0.43", "8.6", False),  # never an older TensorRT
        ({"version_compatible": True}, "12.0.0.1", "8.6", False),  # nor two majors later
        ({}, "10.13.3.10", "8.6", False),  # another build of the same release
        ({"hardware_compatibility": "ampere+"}, "10.13.3.9", "8.9", True),
        ({"hardware_compatibility": "ampere+"}, "10.13.3.9", "7.5", False),
    ],
)
def test_compatibility(tmp_path, build, version, cc, ok):
    m = _manifest(tmp_path, **build)
    if ok:
        check_compatible(m, version, cc)
    else:
        with pytest.raises(BackendError) as caught:
            check_compatible(m, version, cc, "NVIDIA T4")
        message = str(caught.value)
        assert "built for TensorRT 10.13.3.9 on NVIDIA A10 (compute capability 8.6)" in message
        assert f"this machine has TensorRT {version} on NVIDIA T4 (compute capability {cc})" in message
        assert "overfeat build --model model.onnx --output" in message


def test_malformed_manifests(tmp_path):
    with pytest.raises(ModelError, match="does not exist; a directory without manifest.json is an unfinished build"):
        Manifest.load(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ModelError, match="not valid JSON"):
        Manifest.load(tmp_path / "manifest.json")
    data = _manifest(tmp_path).to_dict()
    del data["gpu"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="missing or has a malformed field 'gpu'"):
        Manifest.load(tmp_path / "manifest.json")


# ---------------------------------------------------------------------------- untrusted manifests


def _edited(tmp_path, edit, **build):
    """A manifest written by ``_manifest`` into tmp_path/engines, its JSON changed by ``edit(data)``."""
    folder = tmp_path / "engines"
    folder.mkdir()
    data = _manifest(folder, **build).to_dict()
    edit(data)
    path = folder / "manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../../../etc/passwd", "path separator"),
        ("/etc/passwd", "absolute path"),
        ("../outside.plan", "path separator"),
        ("..\\outside.plan", "path separator"),
        ("..", "names a directory"),
        ("", "empty"),
        ("scale\x00.plan", "control characters"),
    ],
)
def test_plan_files_outside_the_engine_directory_are_refused(tmp_path, name, problem):
    """A plan named by a path, even one whose sha256 the manifest records rightly, is refused
    when the manifest is read, and by verify_plans for a manifest made in code."""
    import dataclasses

    (tmp_path / "outside.plan").write_bytes(b"not a plan of this build")
    target = tmp_path / "outside.plan" if "passwd" not in name else None
    digest = hashlib.sha256(target.read_bytes()).hexdigest() if target else "cd" * 32

    def edit(data):
        data["plans"][1]["file"] = name
        data["plans"][1]["sha256"] = digest

    path = _edited(tmp_path, edit)
    with pytest.raises(ModelError) as refused:
        Manifest.load(path)
    message = str(refused.value)
    assert f"manifest {path}: plans[1].file {name!r} is not a plain file name (" in message and problem in message
    assert "expected the name of a plan file in" in message and "\n" not in message
    good = _manifest(tmp_path / "engines")
    forged = dataclasses.replace(good, plans=(dataclasses.replace(good.plans[0], file=name, sha256=digest),))
    with pytest.raises(ModelError, match=r"plan file .* is not a plain file name"):
        verify_plans(forged)


def test_a_plan_linked_out_of_the_engine_directory_is_refused(tmp_path):
    folder = tmp_path / "engines"
    folder.mkdir()
    m = _manifest(folder)
    outside = tmp_path / "secret.plan"
    outside.write_bytes(b"plan 245x245")  # the content the manifest records
    (folder / "scale_245x245.plan").unlink()
    (folder / "scale_245x245.plan").symlink_to(outside)
    with pytest.raises(ModelError, match=r"plan scale_245x245.plan leads out of .*engines \(to .*secret.plan\)"):
        verify_plans(Manifest.load(folder / "manifest.json"))
    # a link that stays inside the directory is a plain plan file
    (folder / "scale_245x245.plan").unlink()
    (folder / "kept").mkdir()
    outside.rename(folder / "kept" / "245.plan")
    (folder / "scale_245x245.plan").symlink_to(folder / "kept" / "245.plan")
    verify_plans(m)


def _set(path: str, value):
    """An edit that sets the field at ``path`` (keys and list indices, dotted) to ``value``."""

    def edit(data):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("plans", []), "plans is a list of 0 items, expected a list of 1 to 1024 items"),
        (lambda d: d.update(plans=d["plans"][:1] * 1025), "plans is a list of 1025 items, expected a list of 1 to 1024"),
        (lambda d: d.update(plans=d["plans"][:1] * 2), "expected each plan file listed once"),
        (_set("plans.0.input.max.2", 10**9), "plans[0].input.max[2] is 1000000000, expected an integer from 1 to 65536"),
        (_set("plans.0.input.min.3", "245"), "plans[0].input.min[3] is '245', expected an integer from 1 to 65536"),
        (_set("plans.0.input.min.0", True), "plans[0].input.min[0] is True, expected an integer"),
        (_set("plans.0.input.opt", [2, 3, 245]), "plans[0].input.opt is a list of 3 items, expected a list of 4 to 4 items"),
        (_set("plans.2.input.min", [2, 3, 700, 700]), "plans[2].input is 'min [2, 3, 700, 700], opt [2, 3, 400, 400]"),
        (_set("plans.0.sha256", 5), "plans[0].sha256 is 5, expected a sha256 (lowercase hex)"),
        (_set("plans.0.outputs.scores", list(range(9))), "plans[0].outputs['scores'] is a list of 9 items"),
        (_set("plans.0.outputs.scores", ["2; rm", 2]), "plans[0].outputs['scores'][0] is '2; rm', expected a size or a span"),
        (_set("plans.0.extra", 1), "plans[0] has the unknown field 'extra', expected only file, sha256, input, outputs"),
        (_set("tensorrt_version", 10), "tensorrt_version is 10, expected a version such as 10.13.3.9"),
        (_set("tensorrt_version", "10.13\n; rm -rf ~"), "tensorrt_version is '10.13\\n; rm -rf ~', expected a version"),
        (_set("gpu.name", "A" * 300), "gpu.name is 'AAAA"),
        (_set("gpu.compute_capability", 8.6), "gpu.compute_capability is 8.6, expected MAJOR.MINOR"),
        (_set("precision", "int4"), "precision is 'int4', expected one of fp32, fp16, int8"),
        (_set("format_version", "1"), "has format_version '1', this overfeat reads 1"),
        (lambda d: d["onnx"]["metadata"].update({"overfeat.arch": 5}), "onnx.metadata['overfeat.arch'] is 5, expected text"),
        (_set("onnx.file", "x" * 5000), "onnx.file is 'xxx"),
        (_set("build", {"batch": "2; rm -rf ~"}), "build.batch is '2; rm -rf ~', expected an integer from 1 to 65536"),
        (_set("build", {"dynamic": "1; rm -rf ~ #"}), "build.dynamic is '1; rm -rf ~ #', expected MIN:OPT:MAX sizes HxW"),
        (_set("build", {"version_compatible": "yes"}), "build.version_compatible is 'yes', expected true or false"),
        (_set("build", {"pyramid": [[245, 0]]}), "build.pyramid[0][1] is 0, expected an integer from 1 to 65536"),
        (_set("build", {"workspace": -1}), "build.workspace is -1, expected an integer from 1"),
        (_set("build", {"shell": "rm"}), "build has the unknown field 'shell', expected only pyramid, batch"),
        (_set("gpu", []), "gpu is a list of 0 items, expected an object"),
    ],
)
def test_every_field_is_checked_for_type_and_bounds(tmp_path, edit, message):
    path = _edited(tmp_path, edit)
    with pytest.raises(ModelError) as refused:
        Manifest.load(path)
    text = str(refused.value)
    assert text.startswith(f"manifest {path}") and message in text and "\n" not in text


def test_a_manifest_too_large_or_too_deep_is_refused_before_it_is_used(tmp_path):
    from overfeat.runtime.manifest import MAX_MANIFEST_BYTES

    path = _edited(tmp_path, lambda data: None)
    text = path.read_text()
    Manifest.load(path)  # as written: read
    path.write_text(text + " " * (MAX_MANIFEST_BYTES - len(text)))
    Manifest.load(path)  # exactly the limit: read
    path.write_text(text + " " * (MAX_MANIFEST_BYTES - len(text) + 1))
    with pytest.raises(ModelError, match="is larger than 16 MiB"):
        Manifest.load(path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="is not valid JSON"):
        Manifest.load(path)
    path.write_bytes(b'{"format_version": 1, "gpu": "\xff"}')
    with pytest.raises(ModelError, match="is not valid JSON"):
        Manifest.load(path)


def test_save_refuses_what_load_would_refuse(tmp_path):
    import dataclasses

    m = _manifest(tmp_path)
    bad = dataclasses.replace(m, plans=(dataclasses.replace(m.plans[0], file="../x.plan"),))
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ModelError, match="plans\\[0\\].file '../x.plan' is not a plain file name"):
        bad.save(tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()


def test_host_code_only_when_the_caller_allows_it(tmp_path):
    from overfeat.cli.args import as_flags
    from overfeat.errors import InputError
    from overfeat.runtime.manifest import host_code_allowed

    (tmp_path / "plain").mkdir()
    (tmp_path / "compatible").mkdir()
    plain = _manifest(tmp_path / "plain")
    compatible = _manifest(tmp_path / "compatible", version_compatible=True)
    assert host_code_allowed(plain) is False and host_code_allowed(plain, True) is False  # nothing to allow
    assert host_code_allowed(compatible, True) is True
    for given in (False, "yes", 1):
        with pytest.raises(InputError) as refused:
            host_code_allowed(compatible, given)
        message = str(refused.value)
        assert message.startswith(f"manifest {compatible.path}: the engines were built version-compatible")
        assert "pass `allow_host_code=True`" in message and "pass --allow-host-code," in as_flags(message)


def test_the_tensorrt_backend_refuses_host_code_and_bad_plans_before_touching_tensorrt(tmp_path):
    """The backend's checks of the manifest come before TensorRT is imported: they run here,
    without TensorRT, and refuse as they would on a GPU machine."""
    from importlib.util import find_spec

    from overfeat.errors import InputError
    from overfeat.runtime.backends.tensorrt import TensorRTBackend

    (tmp_path / "compatible").mkdir()
    path = _manifest(tmp_path / "compatible", version_compatible=True).path
    with pytest.raises(InputError, match="pass `allow_host_code=True`"):
        TensorRTBackend(path)
    escaped = _edited(tmp_path, _set("plans.0.file", "../../etc/passwd"))
    with pytest.raises(ModelError, match="is not a plain file name"):
        TensorRTBackend(str(escaped), allow_host_code=True)
    if find_spec("tensorrt") is None:  # allowed: the backend goes on to TensorRT, missing here
        with pytest.raises(ImportError):
            TensorRTBackend(path, allow_host_code=True)


def test_rebuild_commands_quote_what_the_manifest_says(tmp_path):
    """Values from a manifest are shell-quoted in the command an error prints."""
    import dataclasses
    import shlex

    from overfeat.runtime.manifest import rebuild_command

    path = _edited(tmp_path, _set("onnx.file", "1; rm -rf ~ #"))
    m = Manifest.load(path)
    with pytest.raises(BackendError) as refused:
        check_compatible(m, "10.14.1.48", "8.6")
    assert f"Rebuild them here: overfeat build --model '1; rm -rf ~ #' --output {path.parent}" in str(refused.value)
    forged = dataclasses.replace(m, build={"dynamic": "1; rm -rf ~ #", "pyramid": "$(reboot)", "batch": "`id`"})
    command = rebuild_command(forged)
    assert "'1; rm -rf ~ #'" in command and "'$(reboot)'" in command and "'`id`'" in command
    assert shlex.split(command) == [
        "overfeat",
        "build",
        "--model",
        "1; rm -rf ~ #",
        "--output",
        str(path.parent),
        "--pyramid",
        "$(reboot)",
        "--batch",
        "`id`",
        "--dynamic",
        "1; rm -rf ~ #",
    ]
