"""Latency per scale and the end-to-end split, each candidate in a worker process of its own.

Each candidate (an ONNX file in ONNX Runtime, an engine manifest in TensorRT, a checkpoint in
PyTorch eager) is opened in its own process, so its peak memory is its own (``VmHWM``). The
parent runs the candidates in turn within each round (warm-up rounds first, not counted), so
all of them see the same machine load, and ratios between them are measured side by side.

Per round and candidate:

- **per scale**: one ``backend.run`` of a fixed random batch at each pyramid size (batch 2, the
  image and its mirror, unless ``--no-flip``): median and p90 over the rounds;
- **end to end**, per image file: ``read`` (reading and decoding the file), ``preprocess``
  (resize, normalise), ``inference``, ``decode`` (the maps into candidate boxes and classes) and
  ``merge``, the last three named as ``Result.timings`` names them.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overfeat.errors import InputError
from overfeat.progress import Progress

STAGES = ("read", "preprocess", "inference", "decode", "merge")


@dataclass(frozen=True)
class Candidate:
    path: str
    backend: str  # onnxruntime, tensorrt or torch
    label: str
    merge_kernel: str = "auto"  # the greedy merge's kernel (overfeat.runtime.merge.KERNELS)
    precision: str | None = None  # OpenVINO's execution precision (fp32 or bf16); None: the backend's default


@dataclass(frozen=True)
class BenchConfig:
    pyramid: Any = "paper"
    flip: bool = True
    repeat: int = 3
    warmup: int = 1
    seed: int = 0
    min_score: float = 0.2  # localize's floor (Predictor.localize's default); 0 keeps every location of the top classes
    allow_host_code: bool = False  # TensorRT may load version-compatible plans (they run code they embed)

    def __post_init__(self) -> None:
        if self.repeat < 1 or self.warmup < 0:
            raise InputError(
                f"`repeat` {self.repeat} / `warmup` {self.warmup}: expected at least 1 counted round and no negative warm-up"
            )
        if not 0 <= self.min_score <= 1:
            raise InputError(f"`min_score` {self.min_score}: expected a probability within 0..1")


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(conn, candidate: Candidate, config: BenchConfig, sizes, image_files) -> None:
    """Serve timing commands for one candidate until told to stop."""
    try:
        from overfeat.metadata import INPUT_NAME
        from overfeat.runtime import MergeConfig, Predictor
        from overfeat.runtime.image import load_image
        from overfeat.runtime.tasks import DecodeConfig, default_tasks

        start = time.perf_counter()
        predictor = Predictor.from_path(
            candidate.path,
            candidate.backend,
            precision=candidate.precision,
            allow_host_code=config.allow_host_code,
            pyramid=config.pyramid,
            flip=config.flip,
            merge=MergeConfig(kernel=candidate.merge_kernel),
        )
        load = time.perf_counter() - start
        tasks = default_tasks(predictor.meta)
        decoding = DecodeConfig(score_threshold=0.1, min_score=config.min_score)  # detection as overfeat eval decodes it
        rng = np.random.default_rng(config.seed)
        batch = 2 if config.flip else 1
        feeds = [{INPUT_NAME: rng.standard_normal((batch, 3, h, w)).astype(np.float32)} for h, w in sizes]
        conn.send(
            (
                "ready",
                {
                    "load_s": load,
                    "tasks": list(tasks),
                    "precision": predictor.execution_precision,
                    "merge_kernel": predictor.merge_kernel,
                },
            )
        )
        while True:
            command = conn.recv()
            if command == "round":
                scales = []
                for feed in feeds:
                    t = time.perf_counter()
                    predictor.backend.run(feed)
                    scales.append(time.perf_counter() - t)
                images = []
                for path in image_files:
                    t = time.perf_counter()
                    array = load_image(path)
                    read = time.perf_counter() - t
                    timings: dict[str, float] = {}
                    maps = predictor.dense(array, timings)
                    results = predictor.decode(maps, tasks, decoding, image_size=array.shape[:2], timings=timings)
                    total = time.perf_counter() - t
                    split = {
                        "read": read,
                        "preprocess": timings.get("preprocess", 0.0),
                        "inference": timings.get("inference", 0.0),
                    }
                    for result in results.values():  # each task decodes and merges on its own
                        split["decode"] = split.get("decode", 0.0) + result.timings.get("decode", 0.0)
                        split["merge"] = split.get("merge", 0.0) + result.timings.get("merge", 0.0)
                    images.append({"total": total, **split})
                conn.send(("round", {"scales": scales, "images": images}))
            else:
                predictor.close()
                conn.send(("done", {"peak_rss": peak_rss()}))
                return
    except BaseException as exc:  # report, do not hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


@dataclass
class CandidateResult:
    candidate: Candidate
    precision: str = ""
    merge_kernel: str = ""  # the kernel that merged ("compiled" or "numpy")
    load_s: float = 0.0
    peak_rss: int = 0
    scales: list[list[float]] = field(default_factory=list)  # per round, seconds per size
    images: list[dict[str, float]] = field(default_factory=list)  # per (round, image)
    error: str = ""


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q)) if values else float("nan")


def run_candidates(
    candidates: list[Candidate],
    sizes: list[tuple[int, int]],
    image_files: list[str],
    config: BenchConfig,
    progress: Progress | None = None,
) -> list[CandidateResult]:
    """Time every candidate, interleaved round by round, each in its own process."""
    progress = progress or Progress(enabled=False)
    context = multiprocessing.get_context("spawn")
    workers, results = [], []
    try:
        for candidate in candidates:
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, candidate, config, sizes, image_files), daemon=True)
            with progress.step(f"loading {candidate.label}"):
                process.start()
                kind, payload = parent.recv()
            result = CandidateResult(candidate)
            if kind == "error":
                raise InputError(f"{candidate.label} ({candidate.path}) could not be opened for benchmarking: {payload}")
            result.load_s, result.precision, result.merge_kernel = (
                payload["load_s"],
                payload["precision"],
                payload["merge_kernel"],
            )
            workers.append((parent, process))
            results.append(result)
        total = config.warmup + config.repeat
        for number in progress.track(range(total), "rounds", total=total):
            for (parent, _), result in zip(workers, results, strict=True):
                parent.send("round")
                kind, payload = parent.recv()
                if kind == "error":
                    raise InputError(f"{result.candidate.label} failed while benchmarking: {payload}")
                if number >= config.warmup:
                    result.scales.append(payload["scales"])
                    result.images.extend(payload["images"])
        for (parent, _), result in zip(workers, results, strict=True):
            parent.send("stop")
            kind, payload = parent.recv()
            result.peak_rss = payload.get("peak_rss", 0) if kind == "done" else 0
    finally:
        for parent, process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
            parent.close()
    return results


def summarize(result: CandidateResult, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Median/p90 per scale and end to end, throughput and the share of each stage."""
    per_scale = {}
    for i, (h, w) in enumerate(sizes):
        values = [r[i] for r in result.scales]
        per_scale[f"{h}x{w}"] = {"median_ms": 1e3 * statistics.median(values), "p90_ms": 1e3 * _quantile(values, 0.9)}
    totals = [im["total"] for im in result.images]
    stage_sums = {s: sum(im.get(s, 0.0) for im in result.images) for s in STAGES}
    whole = sum(totals)
    return {
        "label": result.candidate.label,
        "path": result.candidate.path,
        "backend": result.candidate.backend,
        "precision": result.precision,
        "merge_kernel": result.merge_kernel,
        "load_s": result.load_s,
        "peak_rss_mib": result.peak_rss / 2**20,
        "scales": per_scale,
        "pyramid_inference_ms": sum(v["median_ms"] for v in per_scale.values()),
        "end_to_end": {
            "median_ms": 1e3 * statistics.median(totals),
            "p90_ms": 1e3 * _quantile(totals, 0.9),
            "images_per_s": len(totals) / whole if whole else float("nan"),
            "images": len(totals),
            "split": {s: v / whole for s, v in stage_sums.items()} if whole else {},
        },
    }


def cpu_name() -> str:
    """The CPU's model name, as benchmark reports state it beside every figure."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


FLAGS = (
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "avx512f",
    "avx2",
)  # what the ceilings depend on


def machine() -> dict[str, Any]:
    """The CPU's name, cores and the flags its GEMM speed depends on (AMX, VNNI, bf16)."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "flags": _cpu_flags()}


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in FLAGS if flag in have]
    except OSError:
        pass
    return []
