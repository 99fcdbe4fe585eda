"""scripts/demo_report.py: the demo's report.md from the files scripts/demo.sh writes.

The inputs are the project's own result objects (:class:`Evaluation`, the calibration
:class:`Report` and its :class:`Comparison`) written as their JSON, so a renamed field breaks
this test rather than the demo."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from overfeat.calibration.gate import Comparison, GateConfig
from overfeat.calibration.pipeline import Report
from overfeat.runtime.evaluate import Evaluation

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "demo_report.py"
_spec = importlib.util.spec_from_file_location("demo_report", _PATH)
demo_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_report)

CLASSES = ("circle", "square")
# per backend: top-1, top-5 and localization error (single-object images), mAP and seconds per image
FIGURES = {
    "onnxruntime": (0.19, 0.02, 0.06, 0.371, 0.45),
    "int8": (0.21, 0.03, 0.07, 0.362, 0.31),
    "torch": (0.18, 0.01, 0.05, 0.374, 0.62),
}


def _evaluation(
    backend: str, kind: str, method: str = "merge", mean_ap: float | None = None, seconds: float | None = None
) -> dict:
    top1, top5, loc, m_ap, default_seconds = FIGURES[backend]
    seconds = default_seconds if seconds is None else seconds
    common = {
        "model": f"{backend}.model",
        "data": f"data/{kind}",
        "images": 60,
        "pyramid": "paper",
        "flip": True,
        "fine_stride": True,
        "classes": CLASSES,
    }
    if kind == "single":
        ev = Evaluation(
            **common,
            merge_threshold=0.5,
            merge_kernel="compiled",
            labelled_images=60,
            top1_error=top1,
            top5_error=top5,
            localization_error=loc,
            seconds_per_image=seconds,
        )
    else:
        m_ap = m_ap if mean_ap is None else mean_ap
        ev = Evaluation(
            **common,
            method=method,
            merge_threshold=0.5 if method == "merge" else None,
            merge_kernel="compiled" if method == "merge" else None,
            iou_threshold=None if method == "merge" else 0.5,
            mean_ap=m_ap,
            ap={"circle": m_ap + 0.1, "square": m_ap - 0.1},
            seconds_per_image=seconds,
        )
    return ev.to_dict()


def _int8_report(failures: list[str], excluded: list[str]) -> dict:
    check = Comparison(
        "model.onnx",
        "model.int8.onnx",
        60,
        ("classify", "localize"),
        GateConfig(),
        agreement={"top1": 0.9833, "top5_overlap": 0.97, "localize_iou": 0.91},
        failures=failures,
    )
    report = Report(
        "model.onnx",
        "model.int8.onnx",
        "int8",
        written=not failures,
        calibration={"method": "minmax", "count": 64, "feeds": 128, "skipped": []},
        excluded=excluded,
        check=check,
    )
    if excluded:
        report.sensitivity = [{"node": n, "error": 0.1} for n in ("conv_1", "conv_2", "conv_3")]
        report.attempts = [{"excluded": [], "passed": False}, {"excluded": excluded, "passed": True}]
        report.speed = {"size": "317x389", "fp32": 0.0123, "int8": 0.0081, "int8_excluded": 0.0094}
    return report.to_dict()


def _demo_dir(root: Path, failures=(), excluded=(), validate: str | None = None) -> Path:
    root.mkdir(exist_ok=True)
    for backend in FIGURES:
        for kind in ("single", "multi"):
            (root / f"eval-{backend}-{kind}.json").write_text(json.dumps(_evaluation(backend, kind)))
    (root / "eval-onnxruntime-multi-vote.json").write_text(
        json.dumps(_evaluation("onnxruntime", "multi", method="vote", mean_ap=0.406, seconds=0.108))
    )
    (root / "int8-check.json").write_text(json.dumps(_int8_report(list(failures), list(excluded))))
    if validate is not None:
        (root / "validate.txt").write_text(validate)
    for task in ("localize", "detect"):
        (root / "drawn" / task).mkdir(parents=True)
        for name in ("002_000001.png", "001_000000.png"):
            (root / "drawn" / task / name).write_bytes(b"")
    return root


def _row(report: str, name: str) -> list[str]:
    rows = [line for line in report.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"expected one row {name!r}, found {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_the_accuracy_table_gives_each_backend_its_figures(tmp_path):
    report = demo_report.main(_demo_dir(tmp_path))
    assert _row(report, "classification top-1 error") == ["classification top-1 error", "19.00%", "21.00%", "18.00%"]
    assert _row(report, "classification top-5 error") == ["classification top-5 error", "2.00%", "3.00%", "1.00%"]
    assert _row(report, "localization error (top-5 boxes, IoU ≥ 0.5)")[1:] == ["6.00%", "7.00%", "5.00%"]
    assert _row(report, "detection mAP@0.5")[1:] == ["0.3710", "0.3620", "0.3740"]
    assert "mAP@0.5 0.4060 against 0.3710, 0.108 s per image against 0.450 s" in report
    assert "| circle | square |" in report and "| 0.4710 | 0.2710 |" in report
    assert _row(report, "single") == ["single", "0.450", "0.310", "0.620"]
    assert "the merge by the compiled kernel" in report
    assert "Test images: 60 single-object and 60 multi-object" in report
    assert "0.80" not in report, "no mAP target for the shapes model"


def test_what_the_toolkit_owes_is_checked(tmp_path, monkeypatch):
    # the figures above: PyTorch's differ from the runtime's everywhere; INT8 mAP 0.9 points below fp32's; 98.3% top-1 agreement
    report = demo_report.main(_demo_dir(tmp_path))
    assert _row(report, "the runtime (ONNX Runtime fp32) gives PyTorch's figures")[1:] == [
        "differ: classification top-1 error, classification top-5 error, localization error (top-5 boxes, IoU ≥ 0.5), detection mAP@0.5",
        "**missed**",
    ]
    assert _row(report, "INT8 mAP@0.5 within 1 point of fp32's")[1:] == ["0.3620 against 0.3710 (-0.90 points)", "met"]
    assert _row(report, "INT8 top-1 class agrees with fp32's on ≥ 99% of images")[1:] == ["98.3%", "**missed**"]
    monkeypatch.setitem(FIGURES, "torch", FIGURES["onnxruntime"])
    report = demo_report.main(_demo_dir(tmp_path / "equal"))
    assert _row(report, "the runtime (ONNX Runtime fp32) gives PyTorch's figures")[1:] == ["all four equal", "met"]


@pytest.mark.parametrize(
    ("failures", "excluded", "verdict"),
    [
        ((), (), "passed with every layer in int8"),
        (
            (),
            ("conv_1",),
            "passed with 1 of 3 layers kept in float by --auto-exclude (conv_1), chosen on these same images after 2 attempts; "
            "at 317x389: fp32 12.3 ms, int8 8.1 ms, int8 with these layers in float 9.4 ms per feed",
        ),
        (
            ("top-1 agreement 98.3% < 99.0%",),
            (),
            "failed (top-1 agreement 98.3% < 99.0%); the plain INT8 model above was written with --no-check",
        ),
    ],
)
def test_the_int8_verdict_follows_the_gate(tmp_path, failures, excluded, verdict):
    report = demo_report.main(_demo_dir(tmp_path, failures, excluded))
    assert f"The default gate (top-1 agreement ≥ 99%, mAP within 1 point) {verdict}" in report
    assert (
        "minmax calibration on 64 generated validation images) against fp32 on 60 single-object test images: top-1 agreement 98.3%"
        in report
    )


VALIDATE_INT8_FAIL = "candidate  precision  verdict\nmodel.safetensors  fp32  PASS\nmodel.int8.onnx  int8  FAIL\n"


@pytest.mark.parametrize(
    ("failures", "validate", "explained"),
    [
        ((), VALIDATE_INT8_FAIL, True),  # the gate passed but validate's fixed tolerance did not: say why both hold
        ((), VALIDATE_INT8_FAIL.replace("FAIL", "PASS"), False),
        (("top-1 agreement 98.3% < 99.0%",), VALIDATE_INT8_FAIL, False),  # both failed: nothing to reconcile
    ],
)
def test_validate_output_is_quoted_and_a_split_verdict_explained(tmp_path, failures, validate, explained):
    report = demo_report.main(_demo_dir(tmp_path, failures, validate=validate))
    assert "```\n" + validate.rstrip() + "\n```" in report
    assert ("The two INT8 verdicts judge different things." in report) is explained


def test_without_validate_output_the_report_leaves_it_out_and_lists_the_pictures_in_order(tmp_path):
    report = demo_report.main(_demo_dir(tmp_path))
    assert "overfeat validate" not in report
    pictures = [line for line in report.splitlines() if line.startswith("- ")]
    assert pictures == [
        f"- {task}: [drawn/{task}/{name}](drawn/{task}/{name})"
        for task in ("localize", "detect")
        for name in ("001_000000.png", "002_000001.png")
    ]
