"""Bad input, over every verb and the Python API: refused with exit code 2 and one
``overfeat: error:`` line, no traceback, no file created, every existing file unchanged.

Each case runs against one folder (``world``) that holds the inputs and where the outputs would go;
the folder is fingerprinted (names, sizes, contents, link targets) before and after. The kill tests
at the end stop real processes (SIGTERM, SIGKILL) during an export and a calibration and check
that only the previous good outputs remain, and that a second run clears what a killed one left.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from overfeat.cli import main
from overfeat.errors import InputError, ModelError
from tests.conftest import TEST_WIDTH, minmax_int8, needs_export, words

pytestmark = needs_export

# metadata keys set to bad values: (key, JSON value)
BAD_META = {
    "stride0": ("stride", "0"),
    "pyramid_empty": ("pyramid", "[]"),
    "arch_bogus": ("arch", '"bogus"'),
    "std_inf": ("std", "[Infinity, 1, 1]"),
    "geometry_stride0": ("geometry", '[{"kernel": 7, "stride": 0, "pad": 0, "dilation": 1}]'),
    "pyramid_huge": ("pyramid", "[[100000, 100000]]"),
}


def _fingerprint(folder: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif path.is_file():
            out[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            out[key] = ("dir",)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_onnx, shapes_onnx):
    """The inputs of every case, in one folder."""
    import onnx

    from overfeat.datasets.coco import write_shapes
    from overfeat.datasets.png import encode_png

    w = tmp_path_factory.mktemp("world")
    model = w / "model.onnx"
    model.write_bytes(Path(small_onnx[0]).read_bytes())
    (w / "shapes.onnx").write_bytes(Path(shapes_onnx).read_bytes())
    rng = np.random.default_rng(0)
    (w / "image.png").write_bytes(encode_png(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)))
    (w / "truncated.png").write_bytes((w / "image.png").read_bytes()[:200])
    (w / "garbage.onnx").write_bytes(b"not an onnx file at all")
    (w / "garbage.pt").write_bytes(b"not a checkpoint")
    (w / "notes.txt").write_text("plain text\n")
    (w / "folder").mkdir()
    (w / "link.json").symlink_to(w / "notes.txt")
    for name, (key, value) in BAD_META.items():
        proto = onnx.load(str(model))
        for prop in proto.metadata_props:
            if prop.key == f"overfeat.{key}":
                prop.value = value
        onnx.save(proto, str(w / f"meta_{name}.onnx"))
    # a COCO split and damaged copies of its JSON
    data = write_shapes(w / "data", "val", 3, seed=5)
    coco = json.loads(data.read_text())
    for name, change in {
        "nan_box": lambda d: d["annotations"][0]["bbox"].__setitem__(0, math.nan),
        "negative_box": lambda d: d["annotations"][0]["bbox"].__setitem__(2, -5),
        "outside_box": lambda d: d["annotations"][0]["bbox"].__setitem__(0, 5000),
        "unknown_category": lambda d: d["annotations"][0].__setitem__("category_id", 999),
        "missing_image": lambda d: d["images"][-1].__setitem__("file_name", "val/absent.png"),
        "wrong_size": lambda d: d["images"][0].__setitem__("width", d["images"][0]["width"] + 7),
    }.items():
        bad = json.loads(json.dumps(coco))
        change(bad)
        (w / "data" / f"{name}.json").write_text(json.dumps(bad))
    # an INT8 model and its range cache, and damaged caches
    shapes = w / "shapes.onnx"
    minmax_int8(shapes, w / "shapes.int8.onnx", cache=w / "good.calib.json", pyramid=1, flip=False)
    cache = json.loads((w / "good.calib.json").read_text())
    first = next(iter(cache["ranges"]))
    for name, change in {
        "zero": lambda c: c["ranges"].__setitem__(first, [0.0, 0.0]),
        "huge": lambda c: c["ranges"].__setitem__(first, [-1e38, 1e38]),
        "reversed": lambda c: c["ranges"].__setitem__(first, [5.0, -5.0]),
        "nan": lambda c: c["ranges"].__setitem__(first, [math.nan, 1.0]),
        "unknown": lambda c: c["ranges"].__setitem__("no_such_tensor", [0.0, 1.0]),
        "missing": lambda c: c["ranges"].pop(first),
    }.items():
        bad = json.loads(json.dumps(cache))
        change(bad)
        (w / f"cache_{name}.json").write_text(json.dumps(bad))
    return w


# (id, argv with {w} for the world folder, what the error says)
CASES = [
    # export
    ("export-arch", "export --arch huge --random-init --output {w}/x.onnx", "invalid choice: 'huge'"),
    ("export-classes-0", "export --arch fast --random-init --num-classes 0 --output {w}/x.onnx", "positive integer"),
    ("export-classes-huge", "export --arch fast --random-init --num-classes 100000000 --output {w}/x.onnx", "at most 100000"),
    ("export-width-0", "export --arch fast --random-init --width 0 --output {w}/x.onnx", "expected a number > 0"),
    ("export-width-nan", "export --arch fast --random-init --width nan --output {w}/x.onnx", "finite number"),
    ("export-width-9", "export --arch fast --random-init --width 9 --output {w}/x.onnx", "width must be in (0, 4]"),
    ("export-tolerance-nan", "export --arch fast --random-init --tolerance nan --output {w}/x.onnx", "finite number"),
    ("export-tolerance-neg", "export --arch fast --random-init --tolerance -1 --output {w}/x.onnx", "number ≥ 0"),
    (
        "export-check-huge",
        "export --arch fast --random-init --width 0.0625 --check-sizes 20000x20000 --output {w}/x.onnx",
        "needs about",
    ),
    ("export-check-small", "export --arch fast --random-init --check-sizes 100x100 --output {w}/x.onnx", "smaller than"),
    ("export-seed-neg", "export --arch fast --random-init --seed -1 --output {w}/x.onnx", "from 0 to"),
    ("export-out-device", "export --arch fast --random-init --output /dev/full", "character device"),
    ("export-out-folder", "export --arch fast --random-init --output {w}/folder", "is a directory"),
    ("export-out-under-file", "export --arch fast --random-init --output {w}/notes.txt/x.onnx", "is not a directory"),
    ("export-ckpt-missing", "export --checkpoint {w}/none.safetensors --output {w}/x.onnx", "does not exist"),
    ("export-ckpt-garbage", "export --arch fast --checkpoint {w}/garbage.pt --output {w}/x.onnx", "could not be read"),
    ("export-ckpt-suffix", "export --arch fast --checkpoint {w}/notes.txt --output {w}/x.onnx", "unknown file type '.txt'"),
    ("export-onto-input", "export --arch fast --checkpoint {w}/notes.txt --output {w}/notes.txt", "is the input"),
    ("export-max-memory", "export --arch fast --random-init --max-memory lots --output {w}/x.onnx", "size 'lots'"),
    # inspect
    ("inspect-missing", "inspect {w}/none.onnx", "does not exist"),
    ("inspect-garbage", "inspect {w}/garbage.onnx", "garbage.onnx"),
    *[(f"inspect-{name}", f"inspect {{w}}/meta_{name}.onnx", f"overfeat.{key}") for name, (key, _) in BAD_META.items()],
    # infer
    ("infer-json-device", "infer {w}/image.png --model {w}/model.onnx --pyramid 1 --json /dev/full", "character device"),
    ("infer-json-folder", "infer {w}/image.png --model {w}/model.onnx --pyramid 1 --json {w}/folder", "is a directory"),
    ("infer-json-image", "infer {w}/image.png --model {w}/model.onnx --pyramid 1 --json {w}/image.png", "is the input"),
    ("infer-json-model", "infer {w}/image.png --model {w}/model.onnx --pyramid 1 --json {w}/model.onnx", "is the input"),
    ("infer-json-link-to-input", "infer {w}/notes.txt --model {w}/model.onnx --json {w}/link.json", "is the input"),
    ("infer-pyramid-huge", "infer {w}/image.png --model {w}/model.onnx --pyramid 100000x100000", "largest input side"),
    ("infer-pyramid-memory", "infer {w}/image.png --model {w}/model.onnx --pyramid 8000x8000 --max-memory 1GiB", "needs about"),
    ("infer-pyramid-small", "infer {w}/image.png --model {w}/model.onnx --pyramid 100x100", "below the model's"),
    ("infer-providers", "infer {w}/image.png --model {w}/model.onnx --providers BogusExecutionProvider", "not available"),
    ("infer-top-k-0", "infer {w}/image.png --model {w}/model.onnx --top-k 0", "positive integer"),
    ("infer-threshold-nan", "infer {w}/image.png --model {w}/model.onnx --task localize --merge-threshold nan", "finite"),
    ("infer-draw-file", "infer {w}/image.png --model {w}/model.onnx --draw {w}/notes.txt", "is a file, expected a folder"),
    ("infer-image-missing", "infer {w}/absent.png --model {w}/model.onnx --pyramid 1", "does not exist"),
    ("infer-image-truncated", "infer {w}/truncated.png --model {w}/model.onnx --pyramid 1", "truncated or corrupt"),
    ("infer-model-garbage", "infer {w}/image.png --model {w}/garbage.onnx", "garbage.onnx"),
    ("infer-model-suffix", "infer {w}/image.png --model {w}/notes.txt", "notes.txt"),
    *[
        (f"infer-{name}", f"infer {{w}}/image.png --model {{w}}/meta_{name}.onnx", f"overfeat.{key}")
        for name, (key, _) in BAD_META.items()
    ],
    # datasets
    ("datasets-seed-neg", "datasets shapes --out {w}/new --split val --count 2 --seed -1", "from 0 to"),
    ("datasets-out-file", "datasets shapes --out {w}/notes.txt --split val --count 2", "notes.txt"),
    ("datasets-count-0", "datasets shapes --out {w}/new --split val --count 0", "count"),
    # eval
    ("eval-data-missing", "eval --model {w}/model.onnx --data {w}/none.json", "none.json"),
    ("eval-data-text", "eval --model {w}/model.onnx --data {w}/notes.txt", "notes.txt"),
    *[
        (f"eval-{name}", f"eval --model {{w}}/model.onnx --data {{w}}/data/{name}.json --pyramid 1", message)
        for name, message in (
            ("nan_box", "finite"),
            ("negative_box", "expected both positive"),
            ("outside_box", "inside the image"),
            ("unknown_category", "is unknown"),
            ("missing_image", "absent.png"),
            ("wrong_size", "000000.png"),
        )
    ],
    (
        "eval-json-data",
        "eval --model {w}/model.onnx --data {w}/data/val.json --pyramid 1 --json {w}/data/val.json",
        "is the input",
    ),
    # train
    ("train-grid", "train --grid 1000 --out {w}/t.safetensors", "needs about"),
    ("train-batch", "train --batch 100000 --out {w}/t.safetensors", "needs about"),
    ("train-pool", "train --multi 100000000 --out {w}/t.safetensors", "needs about"),
    ("train-suffix", "train --out {w}/t.pt", ".safetensors"),
    ("train-width", "train --width 2 --out {w}/t.safetensors", "width"),
    ("train-lr-nan", "train --lr nan --out {w}/t.safetensors", "finite number"),
    # calibrate
    *[
        (
            f"calibrate-cache-{name}",
            f"calibrate --model {{w}}/shapes.onnx --images shapes:val:8 --max-images 8 --method minmax --pyramid 1 --no-flip "
            f"--no-check --cache {{w}}/cache_{name}.json --output {{w}}/c.onnx",
            "cache",
        )
        for name in ("zero", "huge", "reversed", "nan", "unknown", "missing")
    ],
    ("calibrate-onto-model", "calibrate --model {w}/shapes.onnx --images shapes:val:8 --output {w}/shapes.onnx", "is the input"),
    ("calibrate-out-device", "calibrate --model {w}/shapes.onnx --images shapes:val:8 --output /dev/full", "character device"),
    (
        "calibrate-max-images-0",
        "calibrate --model {w}/shapes.onnx --images shapes:val:8 --max-images 0 --output {w}/c.onnx",
        "positive",
    ),
    (
        "calibrate-percentile-nan",
        "calibrate --model {w}/shapes.onnx --images shapes:val:8 --percentile nan --output {w}/c.onnx",
        "finite",
    ),
    ("calibrate-images-missing", "calibrate --model {w}/shapes.onnx --images {w}/nowhere --output {w}/c.onnx", "nowhere"),
    *[
        (
            f"calibrate-{name}",
            f"calibrate --model {{w}}/meta_{name}.onnx --images shapes:val:8 --output {{w}}/c.onnx",
            f"overfeat.{key}",
        )
        for name, (key, _) in BAD_META.items()
        if name in ("stride0", "pyramid_empty")
    ],
    # convert
    ("convert-int8", "convert --precision int8 --model {w}/shapes.onnx --output {w}/c.onnx", "invalid choice"),
    (
        "convert-onto-model",
        "convert --precision fp16 --model {w}/shapes.onnx --output {w}/shapes.onnx --no-check",
        "is the input",
    ),
    ("convert-no-check-data", "convert --precision fp16 --model {w}/shapes.onnx --output {w}/c.onnx", "--check DATA"),
    ("convert-already-int8", "convert --precision fp16 --model {w}/shapes.int8.onnx --output {w}/c.onnx --no-check", "int8"),
    ("convert-meta", "convert --precision fp16 --model {w}/meta_stride0.onnx --output {w}/c.onnx --no-check", "overfeat.stride"),
    # build
    ("build-dry-run-file", "build --model {w}/model.onnx --output {w}/notes.txt --dry-run", "notes.txt"),
    ("build-workspace", "build --model {w}/model.onnx --output {w}/engines --workspace lots --dry-run", "'lots'"),
    ("build-opt-level", "build --model {w}/model.onnx --output {w}/engines --opt-level 9 --dry-run", "invalid choice"),
    ("build-meta", "build --model {w}/meta_geometry_stride0.onnx --output {w}/engines --dry-run", "overfeat.geometry"),
    # validate
    (
        "validate-tolerance-nan",
        "validate --reference {w}/model.onnx --candidate {w}/model.onnx --tolerance fp32=elemwise:nan:0",
        "negative",
    ),
    ("validate-reference", "validate --reference {w}/none.onnx --candidate {w}/model.onnx --random 1", "none.onnx"),
    (
        "validate-runner",
        "validate --reference {w}/model.onnx --candidate {w}/model.onnx@tensorrt --random 1",
        "expected FILE.onnx@openvino",
    ),
    (
        "validate-json-device",
        "validate --reference {w}/model.onnx --candidate {w}/model.onnx --random 1 --json /dev/full",
        "device",
    ),
    (
        "validate-random-huge",
        "validate --reference {w}/model.onnx --candidate {w}/model.onnx --random 1000000",
        "expected 1 to 10000",
    ),
    ("validate-iou", "validate --reference {w}/model.onnx --candidate {w}/model.onnx --random 1 --min-box-iou 2", "within 0..1"),
    # bench
    # triton-repo, serve
    ("triton-repo-garbage", "triton-repo --model {w}/garbage.onnx --output {w}/repo", "garbage.onnx"),
    ("triton-repo-not-ours", "triton-repo --model {w}/model.onnx --output {w}/data", "is not a repository overfeat wrote"),
    ("triton-repo-name", "triton-repo --model {w}/model.onnx --output {w}/repo --name a/b", "--name 'a/b'"),
    ("triton-repo-instances", "triton-repo --model {w}/model.onnx --output {w}/repo --instances 0", "positive integer"),
    ("triton-repo-net", "triton-repo --model {w}/model.onnx --output {w}/repo --net tensorrt", "TensorRT plans come from"),
    ("triton-repo-meta", "triton-repo --model {w}/meta_stride0.onnx --output {w}/repo", "overfeat.stride"),
    ("serve-env", "serve --model {w}/model.onnx --triton-env {w}/folder", "no tritonserver"),
    ("serve-port", "serve --model {w}/model.onnx --http-port 80", "1024 to 65535"),
    ("serve-missing", "serve --model {w}/none.onnx", "none.onnx"),
    ("bench-random-huge", "bench --model {w}/model.onnx --random 1000000", "expected 1 to 10000"),
    ("bench-model-missing", "bench --model {w}/none.onnx --random 1", "none.onnx"),
    ("bench-repeat-0", "bench --model {w}/model.onnx --random 1 --repeat 0", "positive"),
    ("bench-json-model", "bench --model {w}/model.onnx --random 1 --json {w}/model.onnx", "is the input"),
    ("bench-plot-device", "bench --model {w}/model.onnx --random 1 --plot /dev/full", "device"),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(world, capsys, argv, expected):
    before = _fingerprint(world)
    devices = {p: os.stat(p).st_rdev for p in ("/dev/full",)}
    try:
        code = main(argv.format(w=world).split())
    except SystemExit as exc:  # argparse's own refusals leave through SystemExit, as in the installed command
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("overfeat: error:")]
    assert code == 2, err
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert _fingerprint(world) == before  # nothing created, nothing changed
    assert {p: os.stat(p).st_rdev for p in devices} == devices


def test_the_suite_is_large_and_covers_every_verb():
    from overfeat.cli import verbs

    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)
    names = {v.__name__.rsplit(".", 1)[1].replace("_", "-") for v in verbs()}
    assert names <= {c[1].split()[0] for c in CASES}


# ------------------------------------------------------------------- the Python API


def test_api_refuses_bad_input(world, tmp_path):
    from overfeat.calibration.pipeline import CalibrateConfig
    from overfeat.calibration.ranges import Method
    from overfeat.datasets.coco import read_coco
    from overfeat.export import build_model, export_onnx
    from overfeat.fileio import atomic_path, write_json
    from overfeat.metadata import ModelMeta
    from overfeat.runtime import Predictor
    from overfeat.training.train import TrainConfig

    before = _fingerprint(world)
    refusals = [
        (lambda: Predictor.from_path(world / "meta_stride0.onnx"), ModelError, "overfeat.stride"),
        (lambda: Predictor.from_path(world / "model.onnx", pyramid=[(9000, 9000)]), InputError, "needs about"),
        (lambda: ModelMeta.from_props({"overfeat.format_version": "1"}, "m.onnx"), ModelError, "m.onnx: metadata key"),
        (lambda: read_coco(world / "data" / "nan_box.json"), InputError, "finite"),
        (lambda: TrainConfig(grid=1000), InputError, "needs about"),
        (lambda: CalibrateConfig(Method("minmax"), "shapes:val:8", max_images=0), InputError, "`max_images` 0"),
        (lambda: write_json(world / "folder", {}), InputError, "is a directory"),
        (
            lambda: export_onnx(build_model("fast", 2, ("cls",), TEST_WIDTH), tmp_path / "m.onnx", tolerance=math.nan),
            InputError,
            "finite",
        ),
    ]
    for call, kind, message in refusals:
        with pytest.raises(kind, match=message):
            call()
    with pytest.raises(InputError, match="is the input"):
        with atomic_path(world / "notes.txt", inputs=[world / "link.json"]) as tmp:
            tmp.write_text("replaced")
    predictor = Predictor.from_path(world / "model.onnx", pyramid=1)
    predictor.close()
    with pytest.raises(InputError, match="is closed"):
        predictor.classify(np.zeros((300, 300, 3), np.uint8))
    assert _fingerprint(world) == before and not list(tmp_path.iterdir())


def test_a_symlinked_output_is_written_through_and_the_link_kept(world, tmp_path):
    from overfeat.fileio import write_json

    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "out.json"
    link.symlink_to(target)
    write_json(link, {"new": True})
    assert link.is_symlink() and json.loads(target.read_text()) == {"new": True}


def test_a_full_disk_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    """ENOSPC while the temporary file is written: an InputError, the target unchanged, no temp file."""
    import errno

    from overfeat.fileio import atomic_path

    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(InputError, match="could not be written .*nothing was written"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# ------------------------------------------------------------------- kill tests


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "overfeat.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )


def _wait_for(condition, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before the moment to stop it")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise AssertionError(f"no moment to stop it within {seconds} s")
        time.sleep(0.02)


def _stop(process: subprocess.Popen, sig: int) -> int:
    process.send_signal(sig)
    try:
        return process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _ours(scratch: Path) -> list[str]:
    """The scratch folders of overfeat in a temporary folder (other libraries keep files there too)."""
    return sorted(p.name for p in scratch.iterdir() if p.name.startswith("overfeat-"))


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".overfeat-" in p.name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_export_leaves_the_previous_model(tmp_path, sig):
    out = tmp_path / "out"
    argv = words(
        "export --arch fast --random-init --num-classes 3 --width 0.0625 --check-sizes", [""], "--quiet --output", out / "m.onnx"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    assert main(argv) == 0
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    process = _start([*argv[:-1], str(out / "m.onnx"), "--seed", "1"], env)
    _wait_for(lambda: bool(_temps(out)), process)
    code = _stop(process, sig)
    if sig == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM and "terminated" in process.stderr.read()
        assert not _temps(out)
    else:
        assert code == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in out.iterdir() if ".overfeat-" not in p.name} == good
    assert main([*argv, "--seed", "2"]) == 0  # the next run clears what a killed one left
    assert not _temps(out) and sorted(p.name for p in out.iterdir()) == sorted(good)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_calibration_leaves_nothing_behind(shapes_onnx, tmp_path, sig):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.int8.onnx").write_bytes(b"previous good model")
    argv = words(
        "calibrate --model",
        shapes_onnx,
        "--images shapes:val:8 --max-images 8 --method minmax --pyramid 1 --no-flip",
        "--no-check --no-cache --quiet --output",
        out / "m.int8.onnx",
    )
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = _start(argv, env)
    _wait_for(lambda: any(p.name.startswith("overfeat-") for p in scratch.iterdir()), process)
    code = _stop(process, sig)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert not _ours(scratch) and not _temps(out)
    assert (out / "m.int8.onnx").read_bytes() == b"previous good model"
    second = subprocess.run([sys.executable, "-m", "overfeat.cli", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert not _ours(scratch) and not _temps(out)  # the killed run's scratch folder is gone too
    assert (out / "m.int8.onnx").read_bytes() != b"previous good model"


def test_a_replaced_file_keeps_its_permissions_and_stale_names_are_matched_exactly(tmp_path):
    from overfeat.fileio import remove_stale, write_json

    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_json(private, {"new": 1})
    assert private.stat().st_mode & 0o777 == 0o600 and json.loads(private.read_text()) == {"new": 1}
    kept = ["overfeat-bench-2024-results", "overfeat-bench-99999999999999999999-abcdefgh", ".out.json.overfeat-12.tmp"]
    gone = ["overfeat-bench-4194399-abcdefgh"]  # above Linux's largest process ID
    for name in kept[:2] + gone:
        (tmp_path / name).mkdir()
    (tmp_path / kept[2]).write_text("not ours: no random part")
    remove_stale(tmp_path, "overfeat-bench-")
    remove_stale(tmp_path, ".out.json.overfeat-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "private.json"])
