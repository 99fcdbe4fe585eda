"""Shared fixtures: small exported models (same topology as the paper's, reduced width)."""

from __future__ import annotations

from importlib.util import find_spec

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
