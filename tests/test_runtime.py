"""The runtime on real exported models: parity with PyTorch, tasks, threads, and no torch."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from overfeat.errors import InputError, ModelError
from overfeat.geometry import ACCURATE
from overfeat.runtime import Predictor, make_batch, scales
from overfeat.runtime.boxes import nms_vote
from overfeat.runtime.pyramid import Scale
from tests.conftest import needs_export
from tests.test_boxes import encode, meta_for
from tests.threads import assert_threads_match


@pytest.fixture(scope="module")
def predictor(small_onnx):
    path, _ = small_onnx
    with Predictor.from_path(path) as p:
        yield p


def _image(seed, h=300, w=400):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@needs_export
@pytest.mark.parametrize("shape", [(300, 400), (500, 260)])
def test_dense_maps_equal_pytorch_at_every_pyramid_level(small_onnx, predictor, shape):
    import torch

    _, model = small_onnx
    image = _image(1, *shape)
    maps = predictor.dense(image)
    assert [m.scale.size for m in maps] == [(a, b) if shape[0] <= shape[1] else (b, a) for a, b in ACCURATE.pyramid]
    for m in maps:
        batch = make_batch(image, m.scale.size, predictor.meta, flip=True)
        with torch.no_grad():
            expected = model(torch.from_numpy(batch))
        for name, ref in expected.items():
            ref = ref.numpy()
            assert np.abs(m.outputs[name] - ref).max() <= 1e-4 * np.abs(ref).max(), (name, m.scale.size)


def test_classify_is_the_mean_of_spatial_maxima(predictor):
    image = _image(2)
    result = predictor.classify(image, top_k=3)
    maps = predictor.dense(image)
    views = np.concatenate([m.outputs["scores"].max(axis=(2, 3)) for m in maps])
    assert views.shape == (12, 5)  # 6 scales x (image, mirror)
    mean = views.astype(np.float64).mean(axis=0)
    probs = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    assert [c.label for c in result.classes] == np.argsort(-probs)[:3].tolist()
    np.testing.assert_allclose([c.score for c in result.classes], np.sort(probs)[::-1][:3], rtol=1e-12)
    assert result.classes[0].name in predictor.meta.classes
    assert json.loads(json.dumps(result.to_dict()))["task"] == "classify"


def test_tasks_run_and_report(predictor):
    image = _image(3)
    loc = predictor.localize(image, top_k=2)
    assert 1 <= len(loc.boxes) <= 2 and loc.boxes[0].score >= loc.boxes[-1].score
    for b in loc.boxes:
        x1, y1, x2, y2 = b.box
        assert 0 <= x1 <= x2 <= 400 and 0 <= y1 <= y2 <= 300
    det = predictor.detect(image, score_threshold=0.25)
    nms = predictor.detect(image, score_threshold=0.25, method="nms")
    boxes, scores, labels = predictor._detection_candidates(predictor.dense(image), 0.25)
    assert len(boxes) > 0, "the test image must give candidates"
    assert sum(b.members for b in det.boxes) == len(boxes), "every candidate is in exactly one merged box"
    assert abs(sum(b.score for b in det.boxes) - scores.sum()) <= 1e-9 * len(boxes), "merged scores accumulate"
    assert 0 < len(nms.boxes) <= len(boxes) and all(0.25 <= b.score <= 1 and b.members == 1 for b in nms.boxes)
    assert {tuple(b.box) for b in nms.boxes} <= {tuple(map(float, x)) for x in boxes}, "NMS keeps candidates"
    vote = predictor.detect(image, score_threshold=0.25, method="vote")
    expected = []
    for c in np.unique(labels):
        for box, score, count in zip(*nms_vote(boxes[labels == c], scores[labels == c], 0.5), strict=True):
            expected.append((-score, int(c), tuple(box), count))
    assert [(-b.score, b.label, b.box, b.members) for b in vote.boxes] == sorted(expected, key=lambda r: r[:2]), (
        "per class, best first"
    )
    assert len(vote.boxes) == len(nms.boxes) and sum(b.members for b in vote.boxes) == len(boxes)
    assert set(loc.timings) == {"preprocess", "inference", "decode", "merge"}
    no_flip = Predictor(predictor.backend, flip=False, pyramid=2).classify(image)
    assert no_flip.scales == ((245, 245), (461, 569)) and not no_flip.flip


class SyntheticBackend:
    """A backend whose regressor always points at one known box (and class 1 wins everywhere):
    localize must return that box, made of every location of every scale and flip."""

    def __init__(self, box, image_size):
        self.meta, self.source = meta_for(ACCURATE), "synthetic"
        self.box, self.image_size = np.asarray(box, float), image_size

    output_names = ("scores", "boxes")

    def run(self, feeds):
        batch = feeds["image"]
        size = batch.shape[2:]
        scale = Scale(size, (size[0] / self.image_size[0], size[1] / self.image_size[1]), self.image_size)
        h, w = self.meta.map_size(size)
        scores = np.zeros((len(batch), 2, h, w), np.float32)
        scores[:, 1] = 3.0
        boxes = np.zeros((len(batch), 8, h, w), np.float32)
        for b in range(len(batch)):
            boxes[b, 4:] = encode(self.box, self.meta, scale, (h, w), flipped=b == 1)
        return {"scores": scores, "boxes": boxes.astype(np.float64)}

    def close(self):
        pass


def test_localize_recovers_a_known_box_through_every_scale_and_flip():
    box = (40.0, 30.0, 260.0, 190.0)
    image = _image(4, 300, 400)
    predictor = Predictor(SyntheticBackend(box, (300, 400)))
    result = predictor.localize(image, top_k=1)
    locations = sum(
        predictor.meta.map_size(s.size)[0] * predictor.meta.map_size(s.size)[1]
        for s in scales("paper", predictor.meta, (300, 400))
    )
    assert locations == 1575
    top = result.boxes[0]
    assert top.name == "b" and top.members == 2 * locations
    np.testing.assert_allclose(top.box, box, atol=1e-6)
    np.testing.assert_allclose(top.score, 2 * locations * np.exp(3) / (1 + np.exp(3)), rtol=1e-9)


def test_localize_floor_drops_undecided_locations():
    """Class a has probability 1/(1+e³) ≈ 0.047 everywhere: below the default floor of 0.2."""
    predictor = Predictor(SyntheticBackend((40.0, 30.0, 260.0, 190.0), (300, 400)))
    image = _image(4, 300, 400)
    everything = predictor.localize(image, top_k=2, max_boxes=50, min_score=0.0)
    floored = predictor.localize(image, top_k=2, max_boxes=50)
    assert {b.name for b in everything.boxes} == {"a", "b"}
    assert {b.name for b in floored.boxes} == {"b"}
    with pytest.raises(InputError, match="min_score"):
        predictor.localize(image, min_score=1.5)


def test_threads_give_the_sequential_results(predictor):
    assert_threads_match(lambda image: predictor.localize(image).to_dict(), [_image(10 + i) for i in range(6)])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5, 3), np.uint8), "image is 0x5"),
        (np.full((50, 50, 3), np.nan, np.float32), "NaN or inf"),
        (np.zeros((50, 50, 3), np.int32), "dtype int32, expected uint8"),
        (np.zeros((50, 50, 2), np.uint8), r"shape \[50, 50, 2\]"),
        (np.zeros((3, 50, 50, 3), np.uint8), "shape"),
        ([[1, 2], [3, 4]], "got list, expected a NumPy array"),
        (np.full((20, 20, 3), 300.0), "span 300..300, expected 0–255"),
    ],
)
def test_bad_arrays(predictor, image, message):
    with pytest.raises(InputError, match=message):
        predictor.classify(image)


def test_pixel_limit(small_onnx):
    path, _ = small_onnx
    small = Predictor.from_path(path, max_pixels=10_000)
    with pytest.raises(InputError, match="more than the limit of 10,000"):
        small.classify(_image(5, 101, 100))
    assert small.classify(_image(5, 100, 100)).classes


def test_tasks_need_their_heads(tmp_path):
    from overfeat.export import build_model, export_onnx

    path = tmp_path / "cls_only.onnx"
    export_onnx(build_model("fast", 3, ("cls",), 1 / 16), path, check_sizes=())
    p = Predictor.from_path(path)
    with pytest.raises(ModelError, match=r"localize needs the heads \['cls', 'loc'\]"):
        p.localize(_image(6))
    with pytest.raises(ModelError, match="detect needs"):
        p.detect(_image(6))


def test_models_without_or_with_wrong_metadata(tmp_path, small_onnx):
    import onnx

    path, _ = small_onnx
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelError, match="metadata key 'overfeat.format_version' is missing"):
        Predictor.from_path(bare)
    proto = onnx.load(str(path))
    for p in proto.metadata_props:
        if p.key == "overfeat.classes":
            p.value = json.dumps(["a", "b"])
        if p.key == "overfeat.background_index":
            p.value = "2"
    wrong = tmp_path / "wrong.onnx"
    onnx.save(proto, str(wrong))
    with pytest.raises(ModelError, match=r"output 'scores' has shape .*expected \[N, 2, h, w\]"):
        Predictor.from_path(wrong)
    with pytest.raises(ModelError, match="could not be loaded by ONNX Runtime"):
        (tmp_path / "junk.onnx").write_bytes(b"junk")
        Predictor.from_path(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="does not exist"):
        Predictor.from_path(tmp_path / "missing.onnx")


def test_localize_without_torch(small_onnx, tmp_path):
    """A whole localize in a process where torch cannot be imported at all."""
    path, _ = small_onnx
    code = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from overfeat.runtime import Predictor
        image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        result = Predictor.from_path({str(path)!r}).localize(image)
        assert result.boxes, "no boxes"
        assert "torch" not in sys.modules, "torch was imported"
        print("ok", len(result.boxes))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
