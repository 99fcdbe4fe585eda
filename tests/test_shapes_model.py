"""The committed shapes model: it loads, exports, and gives the same metrics in PyTorch and
through the runtime (ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overfeat.cli import main
from tests.conftest import needs_export

pytestmark = needs_export

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    assert main(["export", "--checkpoint", str(CHECKPOINT), "--output", str(out / "model.onnx"), "--quiet"]) == 0
    for kind in ("single", "multi"):
        assert (
            main(
                ["datasets", "shapes", "--out", str(out / kind), "--split", "test", "--count", "6", "--seed", "5", "--kind", kind]
            )
            == 0
        )
    return out


def test_committed_checkpoint_is_small_and_describes_itself():
    from overfeat.export.torch_backend import checkpoint_info

    assert CHECKPOINT.stat().st_size <= 10 * 2**20
    info = checkpoint_info(CHECKPOINT)
    assert (
        info["arch"] == "accurate" and info["width"] == pytest.approx(1 / 12, abs=1e-5) and info["heads"] == ("cls", "loc", "det")
    )
    assert len(info["classes"]) == info["num_classes"] == 10


def test_committed_checkpoint_exports_with_its_own_description(exported):
    from overfeat.runtime.backends import create_backend

    report = json.loads((exported / "model.parity.json").read_text())
    assert report["passed"]
    meta = create_backend(exported / "model.onnx").meta
    assert meta.classes[0] == "circle" and meta.heads == ("cls", "loc", "det") and meta.fine_stride


def test_export_refuses_flags_that_contradict_the_checkpoint(tmp_path, capsys):
    assert (
        main(["export", "--checkpoint", str(CHECKPOINT), "--width", "0.5", "--output", str(tmp_path / "m.onnx"), "--quiet"]) == 2
    )
    assert "contradicts checkpoint" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("kind", "tasks"), [("single", "classify,localize"), ("multi", "detect")])
def test_pytorch_and_the_runtime_give_the_same_metrics(exported, kind, tasks):
    figures = {}
    for backend, model in (("onnxruntime", exported / "model.onnx"), ("torch", CHECKPOINT)):
        out = exported / f"{backend}-{kind}.json"
        assert (
            main(["eval", "--model", str(model), "--data", str(exported / kind), "--task", tasks, "--json", str(out), "--quiet"])
            == 0
        )
        figures[backend] = json.loads(out.read_text())
    keys = ("top1_error", "top5_error", "localization_error", "mean_ap")
    assert any(figures["torch"][k] is not None for k in keys)
    for key in keys:
        assert figures["onnxruntime"][key] == pytest.approx(figures["torch"][key], abs=1e-6), key
    assert figures["onnxruntime"]["ap"] == pytest.approx(figures["torch"]["ap"], abs=1e-6)


def test_the_export_settings_resolver_takes_the_checkpoint_description():
    """overfeat.export.resolve: what the checkpoint describes, what the settings add, what they may not contradict."""
    from overfeat.errors import InputError
    from overfeat.export import ExportSettings, resolve
    from overfeat.export.torch_backend import checkpoint_info

    spec = resolve(CHECKPOINT)
    info = checkpoint_info(CHECKPOINT)
    assert (spec.arch, spec.num_classes, spec.heads, spec.width) == (
        info["arch"],
        info["num_classes"],
        info["heads"],
        info["width"],
    )
    assert spec.classes == info["classes"] and spec.loc_per_class == info["box_per_class"] and spec.fine_stride
    assert resolve(CHECKPOINT, ExportSettings(arch="accurate", coarse=True)).fine_stride is False, "agreeing settings are taken"
    with pytest.raises(InputError, match="`width` 0.5 contradicts checkpoint .*; leave `width` out"):
        resolve(CHECKPOINT, ExportSettings(width=0.5))
    with pytest.raises(InputError, match="`arch` is required"):
        resolve(None)
    plain = resolve(None, ExportSettings(arch="fast"))  # random weights: the paper's defaults
    assert (plain.num_classes, plain.heads, plain.width, plain.loc_per_class, plain.classes) == (1000, ("cls",), 1.0, True, None)
