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
