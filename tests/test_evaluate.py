"""Accuracy evaluation: VOC AP against the devkit-literal reference, the metrics end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from overfeat.errors import InputError
from overfeat.runtime.evaluate import Detections, average_precision, interpolated_ap
from overfeat.runtime.kernels import resolve_kernel
from tests.conftest import cli
from tests.reference import voc_ap_reference


def _random_case(rng, images, classes, ties):
    detections, truths, dets_ref, truths_ref = [], [], [], []
    for _ in range(images):
        g = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(5, 40, (g, 2))], axis=1)
        gl = rng.integers(0, classes, g)
        d = int(rng.integers(0, 8))
        # detections near some ground-truth boxes (hits and near misses) and anywhere (false positives)
        near = gt[rng.integers(0, g, d)] + rng.normal(0, 4, (d, 4)) if g else np.zeros((d, 4))
        xy = rng.uniform(0, 80, (d, 2))
        anywhere = np.concatenate([xy, xy + rng.uniform(5, 40, (d, 2))], axis=1)
        boxes = np.where(rng.random((d, 1)) < 0.7, near, anywhere) if g else anywhere
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
        scores = rng.integers(0, 4, d) / 4 if ties else rng.random(d)
        labels = rng.integers(0, classes, d)
        detections.append(Detections(boxes, scores.astype(float), labels))
        truths.append((gt, gl))
        dets_ref.append([(tuple(b), float(s), int(c)) for b, s, c in zip(boxes, scores, labels, strict=True)])
        truths_ref.append([(tuple(b), int(c)) for b, c in zip(gt, gl, strict=True)])
    return detections, truths, dets_ref, truths_ref


@pytest.mark.parametrize("seed", range(40))
def test_average_precision_equals_the_devkit_loop(seed):
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(1, 5))
    detections, truths, dets_ref, truths_ref = _random_case(rng, int(rng.integers(1, 12)), classes, ties=seed % 2 == 0)
    fast = average_precision(detections, truths, classes)
    slow = voc_ap_reference(dets_ref, truths_ref, classes)
    for f, s in zip(fast, slow, strict=True):
        assert (np.isnan(f) and s is None) or f == pytest.approx(s, abs=1e-12)


def test_average_precision_by_hand():
    gt = (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 0]))
    hit1, hit2, miss = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]
    det = lambda boxes, scores: Detections(np.array(boxes, float), np.array(scores, float), np.zeros(len(boxes), np.int64))  # noqa: E731
    assert average_precision([det([hit1, hit2], [0.9, 0.8])], [gt], 1)[0] == 1.0
    # a false positive first: precision 1/2 at recall 1/2, 2/3 at recall 1
    assert average_precision([det([miss, hit1, hit2], [0.9, 0.8, 0.7])], [gt], 1)[0] == pytest.approx(2 / 3)
    # a duplicate of a found box is a false positive; the second box is never found
    assert average_precision([det([hit1, hit1], [0.9, 0.8])], [gt], 1)[0] == pytest.approx(0.5)
    assert average_precision([det([], [])], [gt], 1)[0] == 0.0
    # a class without ground truth has no AP
    assert np.isnan(average_precision([det([hit1], [0.9])], [gt], 2)[1])
    assert interpolated_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_eval_cli_refuses_bad_data(small_onnx, tmp_path, capsys):
    from overfeat.cli import main

    model = str(small_onnx[0])
    assert main(["eval", "--model", model, "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    for split in ("val", "test"):
        assert main(["datasets", "shapes", "--out", str(tmp_path), "--split", split, "--count", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", model, "--data", str(tmp_path)]) == 2
    assert "choose one with --split" in capsys.readouterr().err
    assert main(["eval", "--model", model, "--data", str(tmp_path), "--split", "train"]) == 2
    assert "no train.json" in capsys.readouterr().err
    # the small model knows 5 of the 10 shape classes
    assert main(["eval", "--model", model, "--data", str(tmp_path), "--split", "test", "--json", str(tmp_path / "e.json")]) == 2
    assert "are not among the model's classes" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
    (tmp_path / "broken.json").write_text(json.dumps({"images": [{"id": 1}]}))
    assert main(["eval", "--model", model, "--data", str(tmp_path / "broken.json")]) == 2
    assert "not COCO-style" in capsys.readouterr().err
    # detection's options where detection does not run, chosen by --task or by the model's heads:
    # refused before any image runs
    from overfeat.export import build_model, export_onnx

    no_det = tmp_path / "no_det.onnx"
    export_onnx(
        build_model("accurate", 5, ("cls", "loc"), 1 / 16, seed=1),
        no_det,
        classes=["circle", "square", "triangle", "star", "cross"],
        check_sizes=(),
    )
    for option in (["--method", "vote"], ["--score-threshold", "0.2"]):
        assert (
            main(["eval", "--model", model, "--data", str(tmp_path), "--split", "val", "--task", "classify,localize", *option])
            == 2
        )
        message = f"{option[0]} applies to --task detect only, but this run's tasks are classify, localize: leave it out, or add detect to --task"
        assert message in capsys.readouterr().err
        assert main(["eval", "--model", str(no_det), "--data", str(tmp_path), "--split", "val", *option]) == 2
        assert message in capsys.readouterr().err
    assert main(["eval", "--model", model, "--data", str(tmp_path), "--split", "val", "--score-threshold", "1.5"]) == 2
    assert "--score-threshold must be within 0..1, got 1.5" in capsys.readouterr().err
    # a threshold of a decoding that does not run
    refused = [
        (
            ["--task", "classify,localize", "--iou-threshold", "0.3"],
            "--iou-threshold applies to --task detect only, but this run's tasks are classify, localize",
        ),
        (
            ["--task", "classify", "--merge-threshold", "0.3"],
            "--merge-threshold applies to --task localize or --task detect only, but this run's task is classify",
        ),
        (
            ["--task", "detect", "--iou-threshold", "0.3"],
            "--iou-threshold sets the suppression of --method nms and --method vote; the greedy merge",
        ),
        (
            ["--task", "detect", "--method", "vote", "--merge-threshold", "0.3"],
            "--merge-threshold sets the greedy merge; --method vote does not merge",
        ),
        (["--method", "nms", "--iou-threshold", "-0.1"], "--iou-threshold must be within 0..1, got -0.1"),
        (["--merge-threshold", "-1"], "MergeConfig.threshold"),
    ]
    for option, message in refused:
        assert main(["eval", "--model", model, "--data", str(tmp_path), "--split", "val", *option]) == 2
        assert message in capsys.readouterr().err, option


def test_eval_runs_every_task_on_a_coco_dataset(small_onnx, tmp_path, monkeypatch):
    """A dataset of the small model's 5 classes: the figures exist and are fractions."""
    from overfeat.cli import main
    from overfeat.datasets.coco import read_coco
    from overfeat.runtime import DecodeConfig, Predictor
    from overfeat.runtime.evaluate import evaluate

    assert main(["datasets", "shapes", "--out", str(tmp_path), "--split", "test", "--count", "3", "--kind", "multi"]) == 0
    data = json.loads((tmp_path / "test.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 5]
    data["categories"] = data["categories"][:5]
    (tmp_path / "five.json").write_text(json.dumps(data))
    with Predictor.from_path(small_onnx[0], pyramid=2) as predictor:
        result = evaluate(predictor, read_coco(tmp_path / "five.json"))
    assert result.images == 3 and result.mean_ap is not None and 0 <= result.mean_ap <= 1
    assert set(result.ap) == {"circle", "square", "triangle", "star", "cross"}
    assert "mAP@0.5" in result.table() and "detections by merge" in result.table()
    # --method and the thresholds reach the decoding: every prediction the CLI makes asks for them
    asked = []
    predict = Predictor.predict
    monkeypatch.setattr(
        Predictor,
        "predict",
        lambda self, image, tasks, config: (
            asked.append((config.method, config.iou_threshold, self.merge_config.threshold))
            or predict(self, image, tasks, config)
        ),
    )

    def run(flags: str, out) -> int:
        return cli(
            "eval --model", small_onnx[0], "--data", tmp_path / "five.json", "--pyramid 2", flags, "--json", out, "--quiet"
        )

    out = tmp_path / "vote.json"
    assert run("--task detect --method vote --iou-threshold 0.3", out) == 0
    report = json.loads(out.read_text())
    assert asked == [("vote", 0.3, 0.5)] * 3
    asked.clear()
    merged = tmp_path / "merge.json"  # the merge threshold reaches localization too, whatever decodes detections
    assert run("--task localize,detect --method nms --merge-threshold 0.3", merged) == 0
    assert asked == [("nms", 0.5, 0.3)] * 3
    monkeypatch.undo()
    with Predictor.from_path(small_onnx[0], pyramid=2) as predictor:
        voted = evaluate(
            predictor,
            read_coco(tmp_path / "five.json"),
            ["detect"],
            DecodeConfig(score_threshold=0.1, method="vote", iou_threshold=0.3),
        )
    assert report["method"] == "vote" and report["mean_ap"] == voted.mean_ap and report["ap"] == voted.ap
    assert (report["complete"], report["failed_image"], report["failure"], report["images"]) == (True, None, None, 3)
    assert (report["iou_threshold"], report["merge_threshold"], report["merge_kernel"]) == (0.3, None, None), (
        "the merge did not run"
    )
    assert "detections by vote (IoU 0.3)" in voted.table()
    merged_report = json.loads(merged.read_text())
    assert (merged_report["merge_threshold"], merged_report["iou_threshold"]) == (0.3, 0.5)
    assert merged_report["merge_kernel"] == resolve_kernel("auto"), "localization merged, with the kernel auto picks"
    assert (result.merge_threshold, result.iou_threshold) == (0.5, None), "the default run merged both tasks"
    with Predictor.from_path(small_onnx[0], pyramid=2) as predictor:
        assert evaluate(predictor, read_coco(tmp_path / "five.json"), ["classify"]).method is None, "nothing was detected"
        with pytest.raises(InputError, match="detection method 'soft'"):
            evaluate(predictor, read_coco(tmp_path / "five.json"), config=DecodeConfig(method="soft"))


def test_train_cli_refuses_bad_arguments(tmp_path, capsys):
    from overfeat.cli import main

    assert main(["train", "--out", str(tmp_path / "model.pt")]) == 2
    assert "safetensors" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "m.safetensors"), "--steps", "10,x,3"]) == 2
    assert "three comma-separated integers" in capsys.readouterr().err
    assert not any(p.suffix == ".safetensors" for p in tmp_path.iterdir())


def test_eval_checks_every_image_first_and_marks_a_run_that_stops_part_way_incomplete(small_onnx, tmp_path, capsys):
    import dataclasses

    from overfeat.datasets.coco import read_coco
    from overfeat.runtime import Predictor
    from overfeat.runtime.evaluate import EvaluationIncomplete, evaluate

    assert cli("datasets shapes --out", tmp_path, "--split test --count 3 --kind multi") == 0
    data = json.loads((tmp_path / "test.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 5]
    data["categories"] = data["categories"][:5]
    (tmp_path / "five.json").write_text(json.dumps(data))
    out = tmp_path / "e.json"

    def run(model=small_onnx[0]) -> int:
        return cli("eval --model", model, "--data", tmp_path / "five.json", "--pyramid 2 --json", out, "--quiet")

    last = tmp_path / "test" / "000002.png"
    content = last.read_bytes()
    last.unlink()
    capsys.readouterr()
    # a missing image is refused before the model is even opened, and nothing is written
    assert run(model=tmp_path / "no-model.onnx") == 2
    err = capsys.readouterr().err
    assert f"overfeat: error: 1 of the 3 images of the dataset do not match their records: {last}: missing" in err
    assert not out.exists()
    # an image whose header is whole but whose pixels are cut passes the check and fails when it is reached
    last.write_bytes(content[: len(content) // 2])
    assert run() == 2
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert (report["complete"], report["failed_image"], report["images"]) == (False, str(last), 2)
    assert report["failure"].startswith(f"image {last} is truncated or corrupt")
    assert f"overfeat: error: evaluation stopped at image 3 of 3, {last}: image {last} is truncated or corrupt" in captured.err
    assert "INCOMPLETE: stopped at" in captured.out and f"wrote {out} (incomplete)" in captured.out
    dataset = read_coco(tmp_path / "five.json")
    with Predictor.from_path(small_onnx[0], pyramid=2) as predictor:
        first_two = evaluate(predictor, dataclasses.replace(dataset, records=dataset.records[:2]))
        with pytest.raises(EvaluationIncomplete) as stopped:  # the library raises too: its figures are not silently partial
            evaluate(predictor, dataset)
    assert report["mean_ap"] == first_two.mean_ap is not None and report["ap"] == first_two.ap
    partial = stopped.value.partial
    assert (partial.images, partial.complete, partial.failed_image, partial.mean_ap) == (2, False, str(last), first_two.mean_ap)
    last.write_bytes(content)
    assert run() == 0
    assert json.loads(out.read_text())["complete"] is True
