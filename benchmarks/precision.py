"""FP32 vs FP16 vs INT8 in ONNX Runtime on this machine's CPU: speed and accuracy.

    python benchmarks/precision.py speed [--repeat 5] [--json docs/precision-speed.json]
    python benchmarks/precision.py accuracy [--images 100] [--seed 77] [--openvino] [--json docs/precision-accuracy.json]

``speed``: the full-size accurate model (random weights, cls head; 145M parameters) exported,
calibrated to INT8 (minmax on 8 generated shapes images, no accuracy check: random weights
have no answers to keep), then fp32 and int8 run on the six paper scales, each as a batch of
the image and its mirror, in turn within one loop (so both see the same machine load). Median
and p90 per scale and the sum over the pyramid.

``accuracy``: the committed shapes model exported, converted to FP16 and calibrated to INT8 with
each method (64 validation images), then each compared with fp32 by the accuracy gate on held-out
test images (``overfeat.calibration.gate.compare``, six scales plus flips): the ``overfeat eval``
figures of both, top-1 agreement and whether the default gate passes. One more INT8 candidate is
minmax with ``--auto-exclude``, which picks its float layers on the next 100 validation images;
the test images then judge that choice. With ``--openvino``: the fp32 file in OpenVINO fp32 and
bf16, and the minmax INT8 file in ONNX Runtime and in OpenVINO, against ONNX Runtime fp32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat.cli import main as cli  # noqa: E402
from overfeat.fileio import write_json  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
PAPER = ((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))


def _run(args: list[str]) -> None:
    code = cli(args)
    if code != 0:
        raise SystemExit(f"overfeat {' '.join(args[:1])} failed with exit code {code}")


def speed(repeat: int, work: Path) -> dict:
    from overfeat.runtime.backends.onnxruntime import session as ort_session

    fp32, int8 = work / "accurate.onnx", work / "accurate.int8.onnx"
    _run(["export", "--arch", "accurate", "--random-init", "--output", str(fp32), "--check-sizes", ""])
    _int8(fp32, int8, "minmax", 8)
    sessions = {name: ort_session(path) for name, path in (("fp32", fp32), ("int8", int8))}
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.normal(0, 1, (2, 3, h, w)).astype(np.float32)} for h, w in PAPER]
    times = {name: [[] for _ in PAPER] for name in sessions}
    for session in sessions.values():  # warm-up
        for feed in feeds:
            session.run(None, feed)
    for r in range(repeat):
        print(f"round {r + 1}/{repeat}", file=sys.stderr, flush=True)
        for i, feed in enumerate(feeds):
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feed)
                times[name][i].append(time.perf_counter() - start)
    rows = []
    for i, size in enumerate(PAPER):
        row = {"size": f"{size[0]}x{size[1]}"}
        for name in sessions:
            row[f"{name}_median"] = float(np.median(times[name][i]))
            row[f"{name}_p90"] = float(np.percentile(times[name][i], 90))
        rows.append(row)
    total = {name: float(np.median(np.sum(times[name], axis=0))) for name in sessions}
    return {
        "repeat": repeat,
        "threads": "ONNX Runtime default (all cores)",
        "rows": rows,
        "pyramid_median": total,
        "speedup": total["fp32"] / total["int8"],
    }


def _int8(fp32: Path, output: Path, method: str, images: int = 64) -> None:
    """``fp32`` in INT8 by ``method`` on ``images`` generated validation images, without the check."""
    from overfeat.calibration.pipeline import CalibrateConfig, calibrate
    from overfeat.calibration.ranges import Method

    calibrate(str(fp32), str(output), CalibrateConfig(Method(method), f"shapes:val:{images}", images, cache=None, check=None))


def _row(label: str, result, excluded: list[str] = (), **extra) -> dict:
    """A candidate's figures as the JSON keeps them, and a line of them on stderr."""
    print(
        f"{label}: top-1 agreement {result.agreement['top1']:.2%}, mAP {result.metrics['candidate']['mean_ap']:.4f} "
        f"(fp32 {result.metrics['fp32']['mean_ap']:.4f}), gate {'PASS' if result.passed else 'FAIL'}",
        file=sys.stderr,
    )
    return {
        "precision": label,
        "fp32": result.metrics["fp32"],
        "candidate": result.metrics["candidate"],
        "agreement": result.agreement,
        "outputs": result.outputs,
        "passed": result.passed,
        "failures": result.failures,
        "excluded": list(excluded),
        **extra,
    }


def accuracy_openvino(images: int, seed: int, work: Path) -> list[dict]:
    """The fp32 file in OpenVINO fp32 and bf16, and the minmax INT8 file in ONNX Runtime and in
    OpenVINO, each against ONNX Runtime fp32 by the gate (the reference run once for all)."""
    from overfeat.calibration.gate import ReferenceOutputs, compare
    from overfeat.datasets.images import open_images

    fp32, int8 = work / "shapes.onnx", work / "shapes.minmax.int8.onnx"
    _run(["export", "--checkpoint", str(CHECKPOINT), "--output", str(fp32), "--quiet"])
    _int8(fp32, int8, "minmax")
    kept = ReferenceOutputs()
    rows = []
    for label, path, backend, precision in (
        ("int8 minmax, ONNX Runtime", int8, "onnxruntime", None),
        ("fp32, OpenVINO", fp32, "openvino", "fp32"),
        ("bf16, OpenVINO", fp32, "openvino", "bf16"),
        ("int8 minmax, OpenVINO", int8, "openvino", None),
    ):
        result = compare(
            str(fp32),
            str(path),
            open_images(f"shapes:test:{images}", seed),
            images,
            reference_outputs=kept,
            candidate_backend=backend,
            candidate_precision=precision,
        )
        rows.append(_row(label, result))
    return rows


def accuracy(images: int, seed: int, work: Path) -> list[dict]:
    from overfeat.calibration.gate import compare
    from overfeat.calibration.pipeline import CalibrateConfig, CheckConfig, calibrate, convert
    from overfeat.calibration.ranges import Method
    from overfeat.datasets.images import open_images

    fp32 = work / "shapes.onnx"
    _run(["export", "--checkpoint", str(CHECKPOINT), "--output", str(fp32), "--quiet"])

    def judged(label: str, path: Path, excluded=(), speed=None) -> dict:
        return _row(
            label, compare(str(fp32), str(path), open_images(f"shapes:test:{images}", seed), images), excluded, speed=speed
        )

    convert(str(fp32), str(work / "shapes.fp16.onnx"), "fp16", None)
    rows = [judged("fp16", work / "shapes.fp16.onnx")]
    for method in ("minmax", "entropy", "percentile"):
        _int8(fp32, work / f"shapes.{method}.int8.onnx", method)
        rows.append(judged(f"int8 {method}", work / f"shapes.{method}.int8.onnx"))
    # --auto-exclude chooses its layers on validation images (the 100 after the 64 it calibrates
    # on), so the test images below judge its choice without having made it
    label, auto = "int8 minmax, auto-exclude", work / "shapes.auto.int8.onnx"
    config = CalibrateConfig(Method("minmax"), "shapes:val:164", 64, auto_exclude=True, cache=None, check=CheckConfig(count=100))
    report = calibrate(str(fp32), str(auto), config)
    if report.written:
        rows.append(judged(label, auto, report.excluded, report.speed))
    else:
        rows.append({"precision": label, "passed": False, "excluded": None, "failures": report.check.failures})
        print(f"{label}: no exclusion set passes on the validation images", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--json", default=None)
    a = sub.add_parser("accuracy")
    a.add_argument("--images", type=int, default=100)
    a.add_argument("--seed", type=int, default=77)
    a.add_argument("--json", default=None)
    a.add_argument("--openvino", action="store_true", help="instead: OpenVINO fp32, bf16 and int8 next to ONNX Runtime's int8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overfeat-precision-") as tmp:
        if args.what == "speed":
            result = speed(args.repeat, Path(tmp))
        else:
            result = (accuracy_openvino if args.openvino else accuracy)(args.images, args.seed, Path(tmp))
    if args.json:
        write_json(args.json, {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "result": result})
    if args.what == "speed":
        for row in result["rows"]:
            print(
                f"{row['size']:>8}  fp32 {row['fp32_median'] * 1e3:8.1f} ms (p90 {row['fp32_p90'] * 1e3:7.1f})  "
                f"int8 {row['int8_median'] * 1e3:8.1f} ms (p90 {row['int8_p90'] * 1e3:7.1f})  {row['fp32_median'] / row['int8_median']:.2f}×"
            )
        print(
            f"six scales + flips: fp32 {result['pyramid_median']['fp32']:.2f} s, int8 {result['pyramid_median']['int8']:.2f} s: {result['speedup']:.2f}× faster"
        )
    else:
        for row in result:
            if "candidate" not in row:
                print(f"{row['precision']:<18} no exclusion set passes: {'; '.join(row['failures'])}")
                continue
            f, c = row["fp32"], row["candidate"]
            print(
                f"{row['precision']:<26} top-1 {c['top1_error']:.1%} (fp32 {f['top1_error']:.1%})  top-5 {c['top5_error']:.1%}  "
                f"loc {c['localization_error']:.1%}  mAP {c['mean_ap']:.4f} (fp32 {f['mean_ap']:.4f})  "
                f"top-1 agreement {row['agreement']['top1']:.1%}  gate {'PASS' if row['passed'] else 'FAIL'}"
                + (f"  ({len(row['excluded'])} layers in float: {', '.join(row['excluded'])})" if row["excluded"] else "")
            )


if __name__ == "__main__":
    main()
