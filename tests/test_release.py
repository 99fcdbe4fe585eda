"""The authors' released weight files: written here in the released layout from the offsets
table (independently of the importer), imported, and compared with a literal re-implementation
of the released network (explicit padding layers, the Threshold(0, 1e-6) activation)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from overfeat.errors import InputError, ModelError
from tests.conftest import cli, needs_export

pytestmark = needs_export

# the release's layout: (layer, weight shape, weight offset, bias offset), in floats
TABLE = {
    "fast": [
        ("conv1", (96, 3, 11, 11), 0, 34_848),
        ("conv2", (256, 96, 5, 5), 34_944, 649_344),
        ("conv3", (512, 256, 3, 3), 649_600, 1_829_248),
        ("conv4", (1024, 512, 3, 3), 1_829_760, 6_548_352),
        ("conv5", (1024, 1024, 3, 3), 6_549_376, 15_986_560),
        ("fc6", (3072, 1024, 6, 6), 15_987_584, 129_233_792),
        ("fc7", (4096, 3072, 1, 1), 129_236_864, 141_819_776),
        ("fc8", (1000, 4096, 1, 1), 141_823_872, 145_919_872),
    ],
    "accurate": [
        ("conv1", (96, 3, 7, 7), 0, 14_112),
        ("conv2", (256, 96, 7, 7), 14_208, 1_218_432),
        ("conv3", (512, 256, 3, 3), 1_218_688, 2_398_336),
        ("conv4", (512, 512, 3, 3), 2_398_848, 4_758_144),
        ("conv5", (1024, 512, 3, 3), 4_758_656, 9_477_248),
        ("conv6", (1024, 1024, 3, 3), 9_478_272, 18_915_456),
        ("fc7", (4096, 1024, 5, 5), 18_916_480, 123_774_080),
        ("fc8", (4096, 4096, 1, 1), 123_778_176, 140_555_392),
        ("fc9", (1000, 4096, 1, 1), 140_559_488, 144_655_488),
    ],
}
FLOATS = {"fast": 145_920_872, "accurate": 144_656_488}
# the released network: conv1's stride, and the pool after each layer (0: none); pads before 3x3 only
STRIDE1 = {"fast": 4, "accurate": 2}
POOLS = {"fast": {"conv1": 2, "conv2": 2, "conv5": 2}, "accurate": {"conv1": 3, "conv2": 2, "conv6": 3}}
WINDOW = {"fast": 231, "accurate": 221}


def write_release(path, arch: str, seed: int = 0) -> None:
    """A weight file in the released layout: He-scaled random weights, small random biases,
    each layer at the offsets of the table."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        for _, shape, weight_at, bias_at in TABLE[arch]:
            assert f.tell() == 4 * weight_at
            fan_in = math.prod(shape[1:])
            for _ in range(shape[0]):  # a filter at a time: no full-size array in memory
                f.write((rng.standard_normal(shape[1:], dtype=np.float32) * math.sqrt(2 / fan_in)).astype("<f4").tobytes())
            assert f.tell() == 4 * bias_at
            f.write((rng.standard_normal(shape[0], dtype=np.float32) * 0.01).astype("<f4").tobytes())
        assert f.tell() == 4 * FLOATS[arch]


def released_forward(path, arch: str, x: torch.Tensor) -> torch.Tensor:
    """The released network, literally: explicit zero padding before the 3x3 convolutions,
    Threshold(0, 1e-6) after every layer but the last, non-overlapping max pooling."""
    layers = TABLE[arch]
    for number, (name, shape, weight_at, bias_at) in enumerate(layers):
        weight = torch.from_numpy(np.fromfile(path, "<f4", math.prod(shape), offset=4 * weight_at).reshape(shape))
        bias = torch.from_numpy(np.fromfile(path, "<f4", shape[0], offset=4 * bias_at))
        if shape[2] == 3:
            x = F.pad(x, (1, 1, 1, 1))
        x = F.conv2d(x, weight, bias, stride=STRIDE1[arch] if name == "conv1" else 1)
        if number == len(layers) - 1:
            return x
        x = torch.where(x > 0, x, torch.full_like(x, 1e-6))  # nn.Threshold(0, 1e-6)
        if name in POOLS[arch]:
            x = F.max_pool2d(x, POOLS[arch][name])
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    write_release(folder / "net_weight_1", "accurate", seed=1)
    return folder / "net_weight_1"


def _imported(path, arch: str):
    from overfeat.export import build_model
    from overfeat.export.release import load_release

    model = build_model(arch, 1000, ("cls",), 1.0, seed=0)
    load_release(model, path)
    model.set_fine_stride(False)  # the release's own, coarse map
    return model.eval()


def test_the_imported_accurate_network_is_the_released_one(released):
    """At the window and at all six pyramid sizes, within the export tolerance; the difference
    is the release's Threshold(0, 1e-6) against ReLU."""
    from overfeat.geometry import ACCURATE

    model = _imported(released, "accurate")
    rng = np.random.default_rng(0)
    worst = 0.0
    with torch.no_grad():
        for size in [(221, 221), *ACCURATE.pyramid]:
            x = torch.from_numpy(rng.standard_normal((1, 3, *size), dtype=np.float32))
            ours, theirs = model(x)["scores"], released_forward(released, "accurate", x)
            assert ours.shape == theirs.shape, size
            worst = max(worst, float((ours - theirs).abs().max() / theirs.abs().max()))
    print(f"accurate: largest relative difference, ReLU against Threshold(0, 1e-6): {worst:.2e}")
    assert worst <= 1e-4


def test_the_imported_fast_network_is_the_released_one(tmp_path):
    from overfeat.geometry import FAST

    path = tmp_path / "net_weight_0"
    write_release(path, "fast", seed=2)
    model = _imported(path, "fast")
    rng = np.random.default_rng(1)
    worst = 0.0
    with torch.no_grad():
        for size in [(231, 231), FAST.pyramid[0], FAST.pyramid[-1]]:
            x = torch.from_numpy(rng.standard_normal((1, 3, *size), dtype=np.float32))
            ours, theirs = model(x)["scores"], released_forward(path, "fast", x)
            assert ours.shape == theirs.shape, size
            worst = max(worst, float((ours - theirs).abs().max() / theirs.abs().max()))
    print(f"fast: largest relative difference, ReLU against Threshold(0, 1e-6): {worst:.2e}")
    assert worst <= 1e-4


def test_loading_makes_no_second_copy(released):
    """The process's peak resident memory hardly rises while 552 MiB of weights are loaded into
    an already built model: no second copy, and the mapped file's pages are let go as read."""
    script = (
        "import resource, sys\n"
        "from overfeat.export import build_model\n"
        "from overfeat.export.release import load_release\n"
        "model = build_model('accurate', 1000, ('cls',), 1.0, seed=0)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"load_release(model, {str(released)!r})\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    before, after = (int(v) for v in done.stdout.split())
    assert (after - before) * 1024 < 150 * 2**20, f"the peak rose by {(after - before) / 1024:.0f} MiB while loading"


def test_export_reads_a_released_file_and_records_it(released, tmp_path, capsys):
    """overfeat export on the released file: parity-checked at the pyramid, metadata naming the
    source format, class names from --classes; then infer classifies with it."""
    from overfeat.calibration.inspect import inspect_onnx
    from overfeat.datasets.png import encode_png

    names = tmp_path / "classes.txt"
    names.write_text("".join(f"synset {i}\n" for i in range(1000)))
    out = tmp_path / "accurate.onnx"
    assert cli("export --checkpoint", released, "--classes", names, "--check-sizes", [""], "--quiet --output", out) == 0
    meta = inspect_onnx(out).meta
    assert meta.extra["overfeat.source_format"] == "overfeat-release" and meta.classes[3] == "synset 3"
    assert meta.arch == "accurate" and meta.heads == ("cls",) and meta.num_classes == 1000
    image = tmp_path / "image.png"
    image.write_bytes(encode_png(np.random.default_rng(0).integers(0, 256, (250, 300, 3), dtype=np.uint8)))
    capsys.readouterr()
    assert cli("infer", image, "--model", out, "--pyramid 1 --no-flip --json", tmp_path / "r.json") == 0
    result = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert len(result["classes"]) == 5 and result["classes"][0]["name"].startswith("synset ")


def _sparse(path, size: int):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_bad_release_files_are_refused(tmp_path, capsys):
    from overfeat.export.release import SIZES

    out = ["--output", tmp_path / "m.onnx", "--quiet"]
    cases = [
        (["--checkpoint", _sparse(tmp_path / "net_weight_1", SIZES["accurate"] - 4)], "has 578,625,948 bytes"),
        (
            ["--checkpoint", _sparse(tmp_path / "weights.bin", 1000), "--checkpoint-format", "overfeat-release"],
            "exactly 583,683,488",
        ),
        (
            ["--checkpoint", _sparse(tmp_path / "acc", SIZES["accurate"]), "--arch", "fast"],
            "the fast network's file (net_weight_0) has 583,683,488",
        ),
        (["--checkpoint", tmp_path / "acc", "--num-classes", "10"], "--num-classes 10: the released weights"),
        (["--checkpoint", tmp_path / "acc", "--heads", "cls,loc"], "--heads"),
    ]
    nan = _sparse(tmp_path / "nan", SIZES["accurate"])
    with open(nan, "r+b") as f:  # a NaN in conv3's weights
        f.seek(4 * 1_300_000)
        f.write(np.array([np.nan], "<f4").tobytes())
    cases.append((["--checkpoint", nan], "layer 3 (floats 1,218,688 to"))
    for extra, message in cases:
        assert cli("export", *extra, *out) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(InputError, match="`checkpoint_format` 'torch7'"):
        from overfeat.export.release import detect

        detect(nan, "torch7")
    with pytest.raises(ModelError, match="is it truncated"):
        detect(tmp_path / "net_weight_1")
