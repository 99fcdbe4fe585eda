"""The shapes dataset: deterministic, labelled as drawn, readable back as COCO."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from overfeat.datasets.coco import MAX_COUNT, check_images, find_split, read_coco, write_shapes
from overfeat.datasets.png import encode_png
from overfeat.datasets.shapes import CLASSES, generate, unit_shape
from overfeat.errors import InputError


def test_deterministic_and_split_dependent():
    a, b = generate(5, "single", "test", 3), generate(5, "single", "test", 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(generate(5, "single", "val", 3).boxes, a.boxes)
    assert not np.array_equal(generate(6, "single", "test", 3).boxes, a.boxes)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_samples_are_well_formed(kind):
    counts = []
    for index in range(25):
        s = generate(1, kind, "train", index)
        h, w, _ = s.image.shape
        assert s.image.dtype == np.uint8 and 240 <= h <= 600 and 240 <= w <= 600
        assert s.boxes.shape == (len(s.labels), 4) and set(s.labels.tolist()) <= set(range(len(CLASSES)))
        assert (s.boxes[:, 0] >= 0).all() and (s.boxes[:, 2] <= w).all() and (s.boxes[:, 3] <= h).all()
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
        counts.append(len(s.labels))
    if kind == "single":
        assert set(counts) == {1}
    else:
        assert min(counts) == 0 and max(counts) >= 5


def test_every_class_appears_and_sizes_vary():
    labels, sides = [], []
    for index in range(120):
        s = generate(2, "single", "train", index)
        labels.append(int(s.labels[0]))
        box = s.boxes[0]
        sides.append(max(box[2] - box[0], box[3] - box[1]) / min(s.image.shape[:2]))
    assert set(labels) == set(range(len(CLASSES)))
    assert min(sides) < 0.2 and max(sides) > 0.6


def test_unit_shapes_are_distinct_and_filled():
    q, p = np.mgrid[-1:1:101j, -1:1:101j]
    masks = {name: unit_shape(name, p, q) for name in CLASSES}
    for name, mask in masks.items():
        assert 0.15 < mask.mean() <= 1.0, name
    for a in CLASSES:
        for b in CLASSES:
            if a < b:
                assert (masks[a] != masks[b]).mean() > 0.05, (a, b)


def test_png_encoder_round_trips():
    PIL = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    import io

    assert np.array_equal(np.asarray(PIL.open(io.BytesIO(encode_png(image)))), image)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.float32))


def test_write_and_read_coco(tmp_path):
    path = write_shapes(tmp_path, "val", 6, seed=4, kind="multi")
    data = json.loads(path.read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    dataset = read_coco(path)
    assert dataset.classes == CLASSES and len(dataset.records) == 6
    for index, record in enumerate(dataset.records):
        sample = generate(4, "multi", "val", index)
        assert record.path.is_file() and (record.height, record.width) == sample.image.shape[:2]
        assert np.array_equal(record.boxes, sample.boxes) and np.array_equal(record.labels, sample.labels)


def test_bad_datasets(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_coco(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="not COCO-style: missing or malformed 'categories'"):
        read_coco(tmp_path / "bad.json")
    with pytest.raises(InputError, match="kind 'few'"):
        generate(0, "few", "test", 0)


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writing_a_split_again_replaces_it_whole(tmp_path):
    write_shapes(tmp_path, "val", 5, seed=1)
    path = write_shapes(tmp_path, "val", 3, seed=2, kind="multi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val", "val.json"], "no temporary folder is left"
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    records = read_coco(path).records
    assert len(records) == 3
    for index, record in enumerate(records):
        sample = generate(2, "multi", "val", index)
        assert (record.height, record.width) == sample.image.shape[:2] and np.array_equal(record.boxes, sample.boxes)
    check_images(records)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "val").stat().st_mode & 0o777 == 0o777 & ~umask, "the folder has ordinary permissions"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["interrupt", "kill"])
def test_an_interrupted_run_leaves_the_old_split(tmp_path, how):
    """A real process, stopped while it writes the new split: the old split is untouched and reads back."""
    write_shapes(tmp_path, "val", 2, seed=1)
    before = _contents(tmp_path)
    command = [sys.executable, "-m", "overfeat.cli", "datasets", "shapes", "--out", str(tmp_path), "--split", "val"]
    run = subprocess.Popen([*command, "--count", "500", "--seed", "2"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob(".overfeat-val-new-*/val/*.png")):  # the new split is being written
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() is not None else "slow"
        time.sleep(0.05)
    run.send_signal(how)
    _, err = run.communicate(timeout=60)
    visible = {name: data for name, data in _contents(tmp_path).items() if not name.startswith(".")}
    assert visible == before
    records = read_coco(find_split(tmp_path)).records
    assert len(records) == 2 and np.array_equal(records[1].boxes, generate(1, "single", "val", 1).boxes)
    check_images(records)
    if how == signal.SIGINT:
        assert run.returncode == 130 and "interrupted" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["val", "val.json"], "the unfinished split is removed"
    else:  # what the killed run left goes with the next run
        write_shapes(tmp_path, "val", 2, seed=3)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["val", "val.json"]


def test_bad_arguments_are_refused_before_anything_is_made(tmp_path):
    out = tmp_path / "new"
    refused = [
        ({"seed": -1}, "`seed` must be an integer from 0 to 4294967295, got -1"),
        ({"seed": 2**32}, "got 4294967296"),
        ({"count": 0}, f"`count` must be an integer from 1 to {MAX_COUNT:,}, got 0"),
        ({"count": MAX_COUNT + 1}, "got 1000001"),
        ({"kind": "few"}, "kind 'few'"),
        ({"split": "dev"}, "split 'dev'"),
    ]
    for change, message in refused:
        with pytest.raises(InputError, match=re.escape(message)):
            write_shapes(out, **({"split": "val", "count": 2, "seed": 0, "kind": "single"} | change))
        assert not out.exists(), change
    file = tmp_path / "file"
    file.write_text("keep")
    with pytest.raises(InputError, match="`out` .*file is a file, expected a dataset directory"):
        write_shapes(file, "val", 2, 0)
    assert file.read_text() == "keep"
    mine = tmp_path / "mine"
    (mine / "val").mkdir(parents=True)
    (mine / "val" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=re.escape("holds files other than a split's images (notes.txt)")):
        write_shapes(mine, "val", 2, 0)
    assert _contents(mine) == {"val/notes.txt": b"mine"}


@pytest.mark.parametrize("where", ["chmod", "sysfs"])
def test_a_read_only_folder_is_refused(tmp_path, where):
    if where == "chmod":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        outs = [folder, folder / "new"]
    else:
        folder = Path("/sys")
        if not folder.is_dir() or sys.platform != "linux":
            pytest.skip("no /sys")
        outs = [folder, folder / "overfeat-shapes"]
    for out in outs:
        with pytest.raises(InputError, match=f"`out` {re.escape(str(out))} (is not writable|cannot be created)"):
            write_shapes(out, "val", 2, 0)
    assert not (folder / "val").exists() and not (folder / "new").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".val.")]


def test_datasets_cli_refuses_bad_output_and_seed(tmp_path, capsys):
    from overfeat.cli import main

    def refused(*argv) -> str:
        try:
            code = main(["datasets", "shapes", "--split", "val", "--count", "2", *argv])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        return err.strip().splitlines()[-1]

    (tmp_path / "file").write_text("keep")
    assert "is a file, expected a dataset directory" in refused("--out", str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "keep"
    assert "--seed" in refused("--out", str(tmp_path / "new"), "--seed", "-1")
    assert not (tmp_path / "new").exists()
