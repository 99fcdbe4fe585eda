"""Throughput through a local Triton server against the same model in process.

    python benchmarks/triton.py [--requests 48] [--instances 1] [--task detect] [--json docs/triton-throughput.json]

The committed shapes model is exported and put in a repository (``overfeat triton-repo --net
python``: the bundled server has no ONNX Runtime backend), served by the bundled tritonserver
from ``$OVERFEAT_TRITON_ENV`` (``make triton``) on 127.0.0.1. With 1, 4 and 16 concurrent
clients, each sending its share of ``--requests`` generated images one after another, it
measures requests per second and p50/p99 latency of:

- ``in process``: one ``Predictor`` shared by the client threads (the reference);
- ``triton pipeline``: the pipeline model over HTTP (image in, results out; the pyramid, decoding
  and merge run in the server);
- ``triton network``: ``Predictor.from_url`` (the pyramid and merge in the client, each scale's
  batch to the network model over HTTP).

Triton's overhead per request is measured apart, where the model's own work is small: a
classification at one scale without the mirror (a second repository and server), 40 requests
from one client, pipeline p50 minus in-process p50. It includes sending the image (about
600 KB). The full-pyramid p50s differ by more: that difference is the server's own Python
environment (NumPy 1.26) and two processes sharing the cores, not Triton.
All of it runs one path after another on the same machine, in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.bench.run import cpu_name  # noqa: E402
from overfeat.fileio import write_json  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
CLIENTS = (1, 4, 16)


def measure(make_call, images: list[np.ndarray], clients: int) -> dict:
    """``clients`` threads, each with its own call (``make_call()``), share ``images``; every wait is bounded."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(share: list[np.ndarray]) -> None:
        call = make_call()
        for image in share:
            start = time.perf_counter()
            try:
                call(image)
            except Exception as exc:  # recorded, not raised in a thread
                errors.append(str(exc)[:200])
                return
            with lock:
                latencies.append(time.perf_counter() - start)

    shares = [images[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=worker, args=(share,), daemon=True) for share in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - start
    if errors or len(latencies) != len(images):
        raise SystemExit(f"{len(errors)} requests failed: {errors[:3]}")
    return {
        "clients": clients,
        "requests": len(latencies),
        "per_second": round(len(latencies) / wall, 3),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1),
    }


def _overhead(model: Path, image: np.ndarray, work: Path, requests: int = 40) -> dict:
    """Pipeline p50 minus in-process p50 of a one-scale, unmirrored classification."""
    import tritonclient.http as http

    from overfeat.runtime import Predictor
    from overfeat.serving.repository import RepoOptions, write_repository
    from overfeat.serving.server import Server

    options = RepoOptions(name="small", net="python", task="classify", pyramid=1, flip=False)
    repository = write_repository(model, work / "small-repository", options)
    local = Predictor.from_path(model, pyramid=1, flip=False)
    (work / "small").mkdir()
    with Server(repository.path, work / "small") as server:
        client = http.InferenceServerClient(server.http_url, network_timeout=60)

        def remote():
            tensor = http.InferInput("IMAGE", list(image.shape), "UINT8")
            tensor.set_data_from_numpy(image)
            client.infer("small", [tensor])

        times = {}
        for name, call in (("in_process", lambda: local.predict(image, ("classify",))), ("pipeline", remote)):
            for _ in range(5):
                call()
            spent = []
            for _ in range(requests):
                start = time.perf_counter()
                call()
                spent.append(time.perf_counter() - start)
            times[name] = float(np.percentile(spent, 50)) * 1e3
    return {
        "overhead_ms": round(times["pipeline"] - times["in_process"], 2),
        "overhead_pipeline_p50_ms": round(times["pipeline"], 2),
        "overhead_in_process_p50_ms": round(times["in_process"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--task", choices=("classify", "localize", "detect"), default="detect")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import tritonclient.http as http

    from overfeat.datasets.shapes import generate
    from overfeat.runtime import Predictor
    from overfeat.serving.repository import RepoOptions, write_repository
    from overfeat.serving.server import Server

    images = [generate(4321, "multi", "test", i).image for i in range(args.requests)]
    with tempfile.TemporaryDirectory(prefix="overfeat-triton-bench-") as tmp:
        work = Path(tmp)
        model = work / "shapes.onnx"
        export = ["export", "--checkpoint", str(CHECKPOINT), "--output", str(model), "--check-sizes", "", "--quiet"]
        subprocess.run([sys.executable, "-m", "overfeat.cli", *export], check=True)
        options = RepoOptions(net="python", task=args.task, instances=args.instances)
        repository = write_repository(model, work / "repository", options)
        local = Predictor.from_path(model)
        task = (args.task,)

        def in_process():
            return lambda image: local.predict(image, task)

        def pipeline_call(url):
            def make():
                client = http.InferenceServerClient(url, network_timeout=120)

                def call(image):
                    tensor = http.InferInput("IMAGE", list(image.shape), "UINT8")
                    tensor.set_data_from_numpy(image)
                    json.loads(client.infer("overfeat", [tensor], parameters={"task": args.task}).as_numpy("RESULT")[0])

                return call

            return make

        def network_call(url):
            def make():
                remote = Predictor.from_url(url)
                return lambda image: remote.predict(image, task)

            return make

        rows = []
        with Server(repository.path, work) as server:
            for image in images[:2]:  # warm every path once
                in_process()(image)
                pipeline_call(server.http_url)()(image)
                network_call(server.http_url)()(image)
            for clients in CLIENTS:
                for name, make in (
                    ("in process", in_process),
                    ("triton pipeline", pipeline_call(server.http_url)),
                    ("triton network", network_call(server.http_url)),
                ):
                    row = {"path": name, **measure(make, images, clients)}
                    rows.append(row)
                    print(
                        f"{name:<16} {clients:>2} clients  {row['per_second']:6.2f} req/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms",
                        file=sys.stderr,
                    )
        overhead = _overhead(model, images[0], work)
    by = {(r["path"], r["clients"]): r for r in rows}
    result = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_name(),
        "task": args.task,
        "instances": args.instances,
        "rows": rows,
        "pipeline_share_at_4": round(by[("triton pipeline", 4)]["per_second"] / by[("in process", 4)]["per_second"], 3),
        "full_pyramid_p50_difference_ms": round(by[("triton pipeline", 1)]["p50_ms"] - by[("in process", 1)]["p50_ms"], 1),
        **overhead,
    }
    print(
        f"pipeline at 4 clients: {result['pipeline_share_at_4']:.0%} of in-process throughput; overhead {result['overhead_ms']} ms a request"
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
