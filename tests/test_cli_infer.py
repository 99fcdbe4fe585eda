"""`overfeat infer` as a user runs it, on real image files."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PIL")


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / "landscape.png")
    Image.fromarray(rng.integers(0, 256, (420, 260), dtype=np.uint8)).save(tmp_path / "portrait_gray.jpg")
    data = (tmp_path / "landscape.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(data[:300])
    return tmp_path


def _infer(*args):
    return subprocess.run(
        [sys.executable, "-m", "overfeat.cli", "infer", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "task",
    [
        "classify --top-k 3",
        "localize",
        "localize --merge-threshold 0.4 --min-score 0.1",
        "detect",
        "detect --score-threshold 0.2 --method vote",
        "detect --method nms --iou-threshold 0.3",
    ],
)
def test_infer_writes_json_and_pictures(small_onnx, images, tmp_path, task):
    path, _ = small_onnx
    out = tmp_path / "drawn"
    out.mkdir()
    task, *options = task.split()
    done = _infer(
        images / "landscape.png",
        images / "portrait_gray.jpg",
        "--model",
        path,
        "--task",
        task,
        *options,
        "--json",
        tmp_path / "r.json",
        "--draw",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert "landscape.png" in done.stdout and "Traceback" not in done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["task"] for r in report["results"]] == [task, task] and report["failed"] == []
    assert report["results"][1]["height"] == 420 and report["results"][1]["scales"][0] == [245, 245]
    assert report["results"][1]["scales"][1] == [317, 281], "portrait images get transposed sizes"
    assert sorted(p.name for p in out.iterdir()) == ["001_landscape.png", "002_portrait_gray.png"]
    # the options given, and the defaults of those not given, reach the predictor: its results are the CLI's
    from overfeat.runtime import MergeConfig, Predictor

    given = dict(zip(options[::2], options[1::2], strict=True))
    with Predictor.from_path(path, merge=MergeConfig(float(given.get("--merge-threshold", 0.5)))) as predictor:
        image = str(images / "landscape.png")
        if task == "detect":
            expected = predictor.detect(
                image,
                float(given.get("--score-threshold", 0.5)),
                given.get("--method", "merge"),
                float(given.get("--iou-threshold", 0.5)),
            )
        elif task == "localize":
            expected = predictor.localize(image, top_k=5, min_score=float(given.get("--min-score", 0.2)))
        else:
            expected = predictor.classify(image, top_k=int(given.get("--top-k", 5)))
    first = report["results"][0]
    assert first["boxes"] == [b.to_dict() for b in expected.boxes] and first["classes"] == [c.to_dict() for c in expected.classes]
    assert len(first["classes"]) == (3 if task == "classify" else 5 if task == "localize" else 0)
    if task == "detect" and "--score-threshold" in given:
        assert expected.boxes, "the vote case decodes some boxes"
    merges = task == "localize" or (task == "detect" and given.get("--method", "merge") == "merge")
    assert report["merge_kernel"] == (predictor.merge_kernel if merges else None)


def test_infer_merge_kernels_give_the_same_boxes(small_onnx, images, tmp_path):
    """--merge-kernel numpy and compiled: the same JSON but for the kernel named in it."""
    from overfeat.runtime.kernels import compiled_unavailable

    if compiled_unavailable():
        pytest.skip(f"compiled merge: {compiled_unavailable()}")
    path, _ = small_onnx
    reports = {}
    for kernel in ("numpy", "compiled"):
        done = _infer(
            images / "landscape.png",
            "--model",
            path,
            "--task",
            "localize",
            "--min-score",
            "0",
            "--merge-kernel",
            kernel,
            "--json",
            tmp_path / f"{kernel}.json",
        )
        assert done.returncode == 0, done.stderr
        reports[kernel] = json.loads((tmp_path / f"{kernel}.json").read_text())
    assert reports["numpy"]["merge_kernel"] == "numpy" and reports["compiled"]["merge_kernel"] == "compiled"
    boxes = [r["boxes"] for r in reports["numpy"]["results"]]
    assert boxes == [r["boxes"] for r in reports["compiled"]["results"]] and boxes[0]


def test_cli_kernel_names_are_the_runtime_ones():
    from overfeat.cli.args import MERGE_KERNELS
    from overfeat.runtime.kernels import KERNELS

    assert MERGE_KERNELS == KERNELS


def test_infer_goes_on_after_a_bad_image(small_onnx, images):
    path, _ = small_onnx
    done = _infer(
        images / "broken.png", images / "missing.png", images / "landscape.png", "--model", path, "--no-flip", "--pyramid", "2"
    )
    assert done.returncode == 2
    assert "broken.png is truncated or corrupt" in done.stderr and "missing.png does not exist" in done.stderr
    assert "2 of 3 images failed" in done.stderr and "Traceback" not in done.stderr
    assert "landscape.png  (400x300, 2 scales)" in done.stdout


def test_infer_bad_arguments(small_onnx, images, tmp_path):
    path, _ = small_onnx
    cases = [
        (["--model", tmp_path / "none.onnx"], "does not exist"),
        (["--model", path, "--task", "segment"], "invalid choice"),
        (["--model", path, "--draw", images / "landscape.png"], "is a file, expected a folder"),
        (["--model", path, "--pyramid", "100x100"], "below the model's 221-pixel window"),
        (["--model", path, "--task", "localize", "--merge-threshold", "-1"], "MergeConfig.threshold"),
        (
            ["--model", path, "--task", "detect", "--method", "vote", "--merge-threshold", "0.3"],
            "--merge-threshold sets the greedy merge; --method vote does not merge",
        ),
        (["--model", path, "--task", "detect", "--method", "soft"], "invalid choice"),
        (["--model", path, "--task", "detect", "--method", "nms", "--merge-threshold", "0.3"], "--method nms does not merge"),
        (
            ["--model", path, "--task", "classify", "--method", "vote"],
            "--method applies to --task detect only, but this run's task is classify: leave it out",
        ),
        (
            ["--model", path, "--task", "localize", "--method", "nms"],
            "--method applies to --task detect only, but this run's task is localize",
        ),
        (
            ["--model", path, "--score-threshold", "0.2"],
            "--score-threshold applies to --task detect only, but this run's task is classify",
        ),
        (["--model", path, "--task", "detect", "--min-score", "0.1"], "--min-score applies to --task localize only"),
        (["--model", path, "--task", "detect", "--top-k", "3"], "--top-k applies to --task classify or --task localize only"),
        (["--model", path, "--merge-threshold", "0.4"], "--merge-threshold applies to --task localize or --task detect only"),
        (
            ["--model", path, "--task", "detect", "--iou-threshold", "0.3"],
            "--iou-threshold sets the suppression of --method nms and --method vote; the greedy merge",
        ),
        (
            ["--model", path, "--task", "detect", "--method", "merge", "--iou-threshold", "0.3"],
            "suppresses nothing: leave it out, or add --method nms",
        ),
        (
            ["--model", path, "--task", "localize", "--iou-threshold", "0.3"],
            "--iou-threshold applies to --task detect only, but this run's task is localize",
        ),
        (
            ["--model", path, "--task", "detect", "--method", "vote", "--iou-threshold", "1.5"],
            "--iou-threshold must be within 0..1, got 1.5",
        ),
        (["--model", path, "--task", "detect", "--score-threshold", "1.5"], "--score-threshold must be within 0..1, got 1.5"),
        (["--model", path, "--task", "localize", "--min-score", "-0.1"], "--min-score must be within 0..1, got -0.1"),
        (["--model", path, "--draw", tmp_path, "--draw-floor", "2"], "the drawing's --draw-floor must be within 0..1"),
        (["--model", path, "--draw", tmp_path, "--draw-overlap", "-0.5"], "the drawing's --draw-overlap must be within 0..1"),
        (
            ["--model", path, "--draw-floor", "0.1"],
            "--draw-floor only changes the pictures, and no picture is drawn: add --draw DIR",
        ),
        (
            ["--model", path, "--draw-floor", "0", "--draw-overlap", "1"],
            "--draw-floor and --draw-overlap only change the pictures",
        ),
    ]
    for args, message in cases:
        done = _infer(images / "landscape.png", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_model_errors_end_the_run_once(tmp_path, images):
    from overfeat.export import build_model, export_onnx

    model = tmp_path / "cls.onnx"
    export_onnx(build_model("fast", 2, ("cls",), 1 / 16), model, check_sizes=())
    done = _infer(images / "landscape.png", images / "portrait_gray.jpg", "--model", model, "--task", "detect")
    assert done.returncode == 2 and done.stderr.count("detect needs the heads") == 1, done.stderr
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    done = _infer(images / "landscape.png", "--model", manifest, "--providers", "CPUExecutionProvider")
    assert done.returncode == 2 and "does not apply to TensorRT engines" in done.stderr
