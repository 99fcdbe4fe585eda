"""``overfeat bench`` on small models: the MAC count against PyTorch's own layers, dense against
per-window evaluation, the statistics, and the command's JSON, plot and errors (no timed
assertions: speed figures come from running it, see docs/benchmarks.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from overfeat.bench.macs import count_macs
from overfeat.bench.run import Candidate, CandidateResult, summarize
from overfeat.bench.windows import context, per_window
from overfeat.cli import main
from overfeat.geometry import ACCURATE, FAST, spatial_ops
from overfeat.runtime.kernels import resolve_kernel
from tests.conftest import CHECKPOINT, cli, needs_export

pytestmark = needs_export


def _torch_macs(model, size, batch):
    import torch

    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(batch, 3, *size))
    for h in handles:
        h.remove()
    return total


def test_macs_equal_the_pytorch_layers_count(small_onnx, tmp_path):
    import onnx

    path, model = small_onnx
    sizes = [(245, 245), (281, 317), (461, 569)]
    counted = count_macs(path, sizes, batch=2)
    assert counted == {s: _torch_macs(model, s, 2) for s in sizes}
    shuffled = onnx.load(str(path))  # nodes out of order, as quantizers leave them
    nodes = list(shuffled.graph.node)[::-1]
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(nodes)
    onnx.save(shuffled, str(tmp_path / "reversed.onnx"))
    assert count_macs(tmp_path / "reversed.onnx", sizes, batch=2) == counted


def test_context_of_the_paper_networks():
    assert (
        context(spatial_ops(ACCURATE)) == 48 and context(spatial_ops(FAST)) == 48
    )  # four (three) padded convs at stride 12 (16)


@pytest.mark.parametrize("size", [(245, 245), (300, 333), (389, 317)])
def test_per_window_evaluation_equals_the_dense_map(small_onnx, size):
    from overfeat.runtime.backends import create_backend

    path, _ = small_onnx
    backend = create_backend(path)
    image = np.random.default_rng(size[0]).standard_normal((1, 3, *size)).astype(np.float32)
    dense = backend.run({"image": image})
    windows = per_window(backend.run, image, backend.meta)
    for name in dense:
        np.testing.assert_allclose(windows[name], dense[name], rtol=1e-5, atol=1e-5 * np.abs(dense[name]).max())


def test_summary_statistics():
    rng = np.random.default_rng(3)
    result = CandidateResult(Candidate("m.onnx", "onnxruntime", "onnxruntime:m"), precision="fp32", peak_rss=512 * 2**20)
    result.scales = rng.uniform(0.01, 0.02, (7, 2)).tolist()
    result.images = [
        {"total": t, "read": 0.1 * t, "preprocess": 0.2 * t, "inference": 0.6 * t, "decode": 0.05 * t, "merge": 0.05 * t}
        for t in rng.uniform(0.1, 0.3, 9)
    ]
    row = summarize(result, [(245, 245), (281, 317)])
    column = np.asarray(result.scales)[:, 1]
    assert row["scales"]["281x317"]["median_ms"] == pytest.approx(1e3 * np.median(column))
    assert row["scales"]["281x317"]["p90_ms"] == pytest.approx(1e3 * np.quantile(column, 0.9))
    totals = [im["total"] for im in result.images]
    assert row["end_to_end"]["images_per_s"] == pytest.approx(9 / sum(totals))
    assert row["end_to_end"]["split"] == pytest.approx(
        {"read": 0.1, "preprocess": 0.2, "inference": 0.6, "decode": 0.05, "merge": 0.05}
    )
    assert row["peak_rss_mib"] == 512


def test_bench_command_writes_json_and_plot(small_onnx, tmp_path, capsys):
    path, _ = small_onnx
    report, picture = tmp_path / "bench.json", tmp_path / "bench.png"
    code = cli(
        "bench --model",
        path,
        "--merge-kernel numpy,auto --random 2 --pyramid 2 --repeat 2 --warmup 0 --windows --json",
        report,
        "--plot",
        picture,
        "--quiet",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(report.read_text())
    assert data["pyramid"] == ["245x245", "461x569"] and data["images"] == 2 and data["batch"] == 2
    first, second = data["candidates"]
    assert (first["label"], second["label"]) == ("onnxruntime:accurate.onnx numpy", "onnxruntime:accurate.onnx auto")
    assert (first["merge_kernel"], second["merge_kernel"]) == ("numpy", resolve_kernel("auto"))
    assert first["end_to_end"]["images"] == 4  # 2 images x 2 rounds
    assert set(first["scales"]) == {"245x245", "461x569"} and all(
        v["p90_ms"] >= v["median_ms"] > 0 for v in first["scales"].values()
    )
    assert sum(first["end_to_end"]["split"].values()) == pytest.approx(1.0, abs=0.05)  # the stages cover the image's time
    assert first["peak_rss_mib"] > 0 and first["gmacs_achieved"] > 0 and first["speedup_vs_first"] == 1.0
    assert data["macs"][str(path)] == {f"{h}x{w}": v for (h, w), v in count_macs(path, [(245, 245), (461, 569)], 2).items()}
    assert data["windows"]["max_relative_difference"] < 1e-5 and data["windows"]["windows"] == 21 * 30
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dense vs per-window at 461x569" in out and "GEMM ceiling" in out


def test_bench_with_a_pytorch_baseline(tmp_path, capsys, shapes_onnx):
    code = cli(
        "bench --model",
        shapes_onnx,
        "--torch",
        CHECKPOINT,
        "--random 1 --pyramid 1 --repeat 1 --warmup 0 --json",
        tmp_path / "b.json",
        "--quiet",
    )
    assert code == 0
    rows = json.loads((tmp_path / "b.json").read_text())["candidates"]
    assert [r["backend"] for r in rows] == ["onnxruntime", "torch"] and rows[1]["gmacs_achieved"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.onnx", "--random", "1"], "--model missing.onnx does not exist"),
        (["--random", "1"], "give at least one model (--model)"),
        (["--torch", str(CHECKPOINT), "--random", "1", "--windows"], "--windows runs the per-window comparison in ONNX Runtime"),
        (["--model", "{model}", "--images", "{empty}"], "no image files"),
    ],
)
def test_bench_bad_input_exits_2(small_onnx, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(model=small_onnx[0], empty=tmp_path / "empty") for a in args]
    assert main(["bench", *args, "--repeat", "1", "--warmup", "0", "--quiet"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("kernels", ["numpy,fast", "numpy,numpy", ""])
def test_bench_refuses_bad_merge_kernels(small_onnx, capsys, kernels):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--model", str(small_onnx[0]), "--random", "1", "--merge-kernel", kernels])
    assert stop.value.code == 2 and "expected distinct names among auto, compiled, numpy" in capsys.readouterr().err
