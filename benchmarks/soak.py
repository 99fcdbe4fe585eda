"""Memory over a long run: one Predictor on many generated images, resident memory sampled as it goes.

    python benchmarks/soak.py [--images 1000] [--task detect] [--json docs/soak.json]

The committed shapes model is exported to a temporary folder (by another process, so that this
one holds only the runtime: NumPy, ONNX Runtime, the compiled kernels) and opened once (ONNX Runtime,
fp32, the paper's pyramid with flips). Then ``--images`` generated multi-object images of varied
sizes are run through it, one at a time, with the chosen task. The process's resident memory
(VmRSS) is read after the first image and after every tenth of the run; flat readings mean no
per-image state is kept.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.bench.run import cpu_name  # noqa: E402
from overfeat.fileio import write_json  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--task", choices=("classify", "localize", "detect"), default="detect")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from overfeat.datasets.shapes import generate
    from overfeat.runtime import Predictor

    with tempfile.TemporaryDirectory(prefix="overfeat-soak-") as tmp:
        model = Path(tmp) / "shapes.onnx"
        export = ["export", "--checkpoint", str(CHECKPOINT), "--output", str(model), "--check-sizes", "", "--quiet"]
        subprocess.run([sys.executable, "-m", "overfeat.cli", *export], check=True)  # PyTorch stays out of this process
        samples, start = [], time.perf_counter()
        every = max(1, args.images // 10)
        with Predictor.from_path(model) as predictor:
            for i in range(args.images):
                image = generate(1234, "multi", "test", i).image
                predictor.predict(image, (args.task,))
                if i == 0 or (i + 1) % every == 0:
                    samples.append(
                        {"images": i + 1, "rss_mib": round(rss_mib(), 1), "seconds": round(time.perf_counter() - start, 1)}
                    )
                    print(
                        f"{i + 1:6d} images  {samples[-1]['rss_mib']:7.1f} MiB  {samples[-1]['seconds']:7.1f} s", file=sys.stderr
                    )
    result = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_name(),
        "task": args.task,
        "samples": samples,
        "rss_first_mib": samples[0]["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "rss_last_mib": samples[-1]["rss_mib"],
    }
    print(
        f"resident memory: first {result['rss_first_mib']} MiB, largest {result['rss_max_mib']} MiB, last {result['rss_last_mib']} MiB"
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
