"""``overfeat bench``: the whole measurement, its table, JSON and plot.

:func:`benchmark` times every candidate (:mod:`.run`), counts the model's multiply-accumulates
per scale (:mod:`.macs`), measures the machine's GEMM rates (:mod:`.ceiling`) and, when asked,
dense against per-window evaluation at the largest scale (:mod:`.windows`). Each candidate's
achieved rate is its pyramid's MACs over its summed per-scale median inference time; its
*floor* is the same MACs over the GEMM ceiling of its arithmetic (int8 for int8 files, bf16 for
OpenVINO's bf16 execution, fp32 for the rest), and ``end-to-end / floor`` says how far the whole
image is from what the arithmetic alone would take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from overfeat.errors import InputError
from overfeat.fileio import work_dir
from overfeat.progress import Progress

from .run import STAGES, BenchConfig, Candidate, machine, run_candidates, summarize


@dataclass(frozen=True)
class Inputs:
    images: str | None = None  # a directory of image files, a COCO JSON or shapes:SPLIT:N
    random: int | None = None
    max_images: int = 4

    def __post_init__(self) -> None:
        if (self.images is None) == (self.random is None):
            raise InputError("give the images: `images` DATA or `random` N (one of them)")
        from overfeat.datasets.images import check_count

        check_count(self.max_images, "`max_images`")
        check_count(self.random, "`random`")


def candidates_from(models: list[str], torch: str | None, merge_kernels: tuple[str, ...] = ("auto",)) -> list[Candidate]:
    """A candidate per model and merge kernel (several kernels: the kernel ends the label); the
    PyTorch baseline merges with the first kernel. A model is a file (ONNX in ONNX Runtime, an
    engine manifest in TensorRT) or ``FILE.onnx@openvino[:bf16]`` (OpenVINO, fp32 or bf16)."""
    from overfeat.runtime.backends import model_spec

    out = []
    for spec in models:
        path, backend, precision = model_spec(spec, "`models`")
        label = f"{backend}:{Path(path).name}" + (f" {precision}" if precision else "")
        for kernel in merge_kernels:
            out.append(Candidate(path, backend, f"{label} {kernel}" if len(merge_kernels) > 1 else label, kernel, precision))
    if torch:
        if not Path(torch).is_file():
            raise InputError(f"`torch` {torch} does not exist or is not a file")
        out.append(Candidate(torch, "torch", f"torch:{Path(torch).name}", merge_kernels[0]))
    if not out:
        raise InputError("give at least one model (`models`)")
    return out


def _image_files(inputs: Inputs, meta, seed: int, work: Path) -> list[str]:
    """Image files to read: a directory's own files, or generated images written as PNG."""
    import numpy as np
    from PIL import Image

    if inputs.images and Path(inputs.images).is_dir():
        from overfeat.datasets.images import IMAGE_SUFFIXES

        files = sorted(str(p) for p in Path(inputs.images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"`images` {inputs.images}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        rng = np.random.default_rng(seed)
        return [files[i] for i in sorted(rng.permutation(len(files))[: inputs.max_images])]
    from overfeat.datasets.images import open_images, random_images

    if inputs.random is not None:
        arrays = random_images(inputs.random, meta.window, seed)  # made, written and let go one at a time
    else:
        arrays = (image for _, image, _ in open_images(inputs.images, seed).take(inputs.max_images))
    files = []
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(work / f"{i:03d}.png")
        files.append(str(work / f"{i:03d}.png"))
    return files


def arithmetic(precision: str) -> str:
    """The GEMM ceiling a candidate's precision is held to: int8 for int8 files (whatever runs
    their float layers), bf16 for bf16 execution, fp32 for fp32 and fp16 files."""
    return "int8" if precision.startswith("int8") else "bf16" if precision == "bf16" else "fp32"


def _onnx_of(candidate: Candidate) -> str | None:
    """The ONNX file whose graph a candidate runs (for counting MACs)."""
    if candidate.backend in ("onnxruntime", "openvino"):
        return candidate.path
    if candidate.backend == "tensorrt":
        from overfeat.runtime.manifest import Manifest

        onnx = Manifest.load(candidate.path).onnx_file
        return onnx if Path(onnx).is_file() else None
    return None


def benchmark(
    models: list[str],
    inputs: Inputs,
    config: BenchConfig,
    *,
    torch: str | None = None,
    windows: bool = False,
    merge_kernels: tuple[str, ...] = ("auto",),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Time ``models`` (and the ``torch`` checkpoint) side by side on ``inputs``, each with every
    merge kernel of ``merge_kernels``; ``windows`` adds dense against per-window evaluation. The
    report: the machine, the MACs and GEMM ceilings, a row per candidate."""
    from overfeat.engines.validate import describe
    from overfeat.runtime.pyramid import pyramid_sizes

    progress = progress or Progress(enabled=False)
    candidates = candidates_from(models, torch, merge_kernels)
    first = next((c for c in candidates if c.backend == "onnxruntime"), None)
    if windows and first is None:
        raise InputError("`windows` runs the per-window comparison in ONNX Runtime: give an ONNX model among `models`")
    probe = describe(candidates[0].path)  # the metadata without loading an ONNX model's weights into a session
    meta = probe.meta
    if probe.backend is not None:
        probe.backend.close()
    sizes = pyramid_sizes(config.pyramid, meta, (meta.window, meta.window + 1))
    batch = 2 if config.flip else 1
    graphs = [_onnx_of(c) or (first.path if first else None) for c in candidates]  # the graph that counts each candidate's MACs
    macs = _count_macs(list(dict.fromkeys(g for g in graphs if g)), sizes, batch, progress)
    measured, rates = _gemm_rates(progress)
    with work_dir("bench") as tmp:
        files = _image_files(inputs, meta, config.seed, Path(tmp))
        results = run_candidates(candidates, sizes, files, config, progress)
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "pyramid": [f"{h}x{w}" for h, w in sizes],
        "batch": batch,
        "repeat": config.repeat,
        "warmup": config.warmup,
        "min_score": config.min_score,
        "images": len(files),
        "gemm_gmacs": {k: (v / 1e9 if v else None) for k, v in rates.items()},
        "gemm_gmacs_measured": {k: (v / 1e9 if v else None) for k, v in measured.items()},
        "macs": macs,
        "candidates": [],
    }
    for graph, result in zip(graphs, results, strict=True):
        row = summarize(result, sizes)
        _against_ceiling(row, macs.get(graph) if graph else None, rates)
        report["candidates"].append(row)
    base = report["candidates"][0]["end_to_end"]["median_ms"]
    for row in report["candidates"]:
        row["speedup_vs_first"] = base / row["end_to_end"]["median_ms"]
    if windows:
        report["windows"] = _dense_against_windows(first, sizes, config.seed, progress)
    return report


def _count_macs(onnx_files: list[str], sizes, batch: int, progress: Progress) -> dict[str, dict[str, int]]:
    """Multiply-accumulates per scale of each ONNX graph."""
    from .macs import count_macs

    macs = {}
    for onnx in onnx_files:
        with progress.step(f"counting MACs of {onnx}"):
            macs[onnx] = {f"{h}x{w}": v for (h, w), v in count_macs(onnx, sizes, batch).items()}
    return macs


def _gemm_rates(progress: Progress) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """The machine's measured GEMM rates (MAC/s) per arithmetic and runner, and the best per
    arithmetic (fp32, bf16, int8): the ceilings."""
    from .ceiling import fp32_gemm_rate, fp32_gemm_rate_onnxruntime, int8_gemm_rate, openvino_rate

    with progress.step(
        "measuring the GEMM rates (fp32: NumPy, ONNX Runtime, OpenVINO; bf16: OpenVINO; int8: ONNX Runtime, OpenVINO)"
    ):
        measured = {
            "fp32_numpy": fp32_gemm_rate(),
            "fp32_onnxruntime": fp32_gemm_rate_onnxruntime(),
            "fp32_openvino": openvino_rate("fp32"),
            "bf16_openvino": openvino_rate("bf16"),
            "int8_onnxruntime": int8_gemm_rate(),
            "int8_openvino": openvino_rate("int8"),
        }
    rates = {
        p: max((v for k, v in measured.items() if k.startswith(p + "_") and v), default=None) for p in ("fp32", "bf16", "int8")
    }
    return measured, rates


def _against_ceiling(row: dict[str, Any], per_scale_macs: dict[str, int] | None, rates: dict[str, float | None]) -> None:
    """Add to a candidate's row the rate it reached and its floor: the pyramid's MACs at the
    ceiling of its arithmetic."""
    if not per_scale_macs:
        return
    total = sum(per_scale_macs.values())
    rate = rates.get(arithmetic(row["precision"])) or rates["fp32"]
    floor_ms = 1e3 * total / rate
    row["gmacs_achieved"] = total / (row["pyramid_inference_ms"] / 1e3) / 1e9
    row["ceiling_fraction"] = row["gmacs_achieved"] * 1e9 / rate
    row["floor_ms"] = floor_ms
    row["end_to_end_over_floor"] = row["end_to_end"]["median_ms"] / floor_ms


def _dense_against_windows(first: Candidate, sizes, seed: int, progress: Progress) -> dict[str, Any]:
    """Dense evaluation against the classifier on every window, at the largest scale, in ONNX Runtime."""
    from overfeat.runtime.backends import create_backend

    from .windows import compare_dense_and_windows

    largest = max(sizes, key=lambda s: s[0] * s[1])
    backend = create_backend(first.path, "onnxruntime")
    try:
        with progress.step(f"dense against per-window at {largest[0]}x{largest[1]} ({first.label})"):
            return {"model": first.path, **compare_dense_and_windows(backend.run, backend.meta, largest, seed)}
    finally:
        backend.close()


def table(report: dict[str, Any]) -> str:
    g, m = report["gemm_gmacs"], report["gemm_gmacs_measured"]

    def rates(precision: str) -> str:
        parts = [
            f"{name} {2 * v:.0f}"
            for name, key in (("NumPy", "numpy"), ("ONNX Runtime", "onnxruntime"), ("OpenVINO", "openvino"))
            if (v := m.get(f"{precision}_{key}"))
        ]
        return f"{precision} {2 * g[precision]:.0f} ({', '.join(parts)})" if g.get(precision) else f"{precision} not measured"

    machine = report["machine"]
    flags = ", ".join(machine.get("flags", [])) or "none of AMX, AVX-512 BF16/VNNI, AVX-VNNI"
    lines = [
        f"overfeat bench, {report['date']}, {machine['cpu']} ({machine['cores']} cores; {flags})",
        f"pyramid {', '.join(report['pyramid'])}, batch {report['batch']}; {report['images']} images; {report['repeat']} rounds after {report['warmup']} warm-up",
        f"GEMM ceilings, GFLOP/s (GOP/s for int8): {rates('fp32')}; {rates('bf16')}; {rates('int8')}",
        "",
    ]
    scales = report["pyramid"]
    width = max([9, *(len(row["label"]) for row in report["candidates"])])
    lines.append(
        f"{'candidate':<{width}} "
        + " ".join(f"{s:>9}" for s in scales)
        + f" {'pyramid':>9}   (median ms per scale, inference only)"
    )
    for row in report["candidates"]:
        lines.append(
            f"{row['label']:<{width}} "
            + " ".join(f"{row['scales'][s]['median_ms']:>9.1f}" for s in scales)
            + f" {row['pyramid_inference_ms']:>9.1f}"
        )
    lines += [
        "",
        f"{'candidate':<{width}} {'prec':<9} {'merge':<8} {'e2e ms':>8} {'p90 ms':>8} {'img/s':>6} {'peak MiB':>9} {'GFLOP/s':>8} {'of ceil':>7} {'/floor':>7} {'speedup':>7}  outside inference",
    ]
    for row in report["candidates"]:
        e = row["end_to_end"]
        outside = 1 - e["split"].get("inference", 0)
        split = ", ".join(f"{k} {v:.1%}" for k, v in e["split"].items() if k != "inference")
        gflops = f"{2 * row['gmacs_achieved']:.0f}" if "gmacs_achieved" in row else "-"
        ceil = f"{row['ceiling_fraction']:.0%}" if "ceiling_fraction" in row else "-"
        floor = f"{row['end_to_end_over_floor']:.2f}x" if "end_to_end_over_floor" in row else "-"
        lines.append(
            f"{row['label']:<{width}} {row['precision']:<9} {row['merge_kernel']:<8} {e['median_ms']:>8.1f} {e['p90_ms']:>8.1f} {e['images_per_s']:>6.2f} {row['peak_rss_mib']:>9.0f} "
            f"{gflops:>8} {ceil:>7} {floor:>7} {row['speedup_vs_first']:>6.2f}x  {outside:.1%} ({split})"
        )
    if "windows" in report:
        w = report["windows"]
        lines += [
            "",
            f"dense vs per-window at {w['size'][0]}x{w['size'][1]} ({w['windows']} windows, {w['context_px']} px context each): "
            f"dense {1e3 * w['dense_s']:.1f} ms, per-window {1e3 * w['per_window_s']:.0f} ms, {w['speedup']:.1f}x faster; "
            f"largest difference {w['max_relative_difference']:.1e} of the output range",
        ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Latency per scale for each candidate, and each candidate's end-to-end time by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from overfeat.fileio import atomic_path

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    scales = report["pyramid"]
    for row in report["candidates"]:
        left.plot(scales, [row["scales"][s]["median_ms"] for s in scales], marker="o", label=row["label"])
    left.set(xlabel="input size (H x W)", ylabel="median latency per batch (ms)", title="inference per scale", yscale="log")
    left.tick_params(axis="x", rotation=30)
    left.legend(fontsize=8)
    labels = [row["label"] for row in report["candidates"]]
    bottom = [0.0] * len(labels)
    stages = STAGES
    for stage in stages:  # the mean image's time (the split is of the summed times, so it splits the mean, not the median)
        values = [
            1e3 / row["end_to_end"]["images_per_s"] * row["end_to_end"]["split"].get(stage, 0) for row in report["candidates"]
        ]
        right.barh(labels, values, left=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set(xlabel="mean end-to-end time per image (ms), split by stage", title="end to end")
    right.legend(fontsize=8)
    fig.suptitle(f"overfeat bench, {report['machine']['cpu']}, {report['date'][:10]}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
