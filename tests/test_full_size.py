"""The paper-size networks (145M parameters) export with parity ≤ 1e-4 at all six scales."""

import pytest

from tests.conftest import needs_export

pytestmark = [needs_export, pytest.mark.slow]


@pytest.mark.parametrize("arch", ["accurate", "fast"])
def test_full_size_export_parity(tmp_path, arch):
    from overfeat.export import build_model, export_onnx

    model = build_model(arch, num_classes=1000, heads=("cls",), seed=0)
    report = export_onnx(model, tmp_path / f"{arch}.onnx")
    sizes = {r.size for r in report.rows}
    assert set(model.spec.pyramid) <= sizes and len(sizes) == 8
    assert report.passed and report.max_rel <= 1e-4
    assert (tmp_path / f"{arch}.onnx").stat().st_size > 500e6
