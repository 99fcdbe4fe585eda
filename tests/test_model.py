"""The PyTorch models: exact paper sizes, and fine stride proven equal to explicit offsets."""

import numpy as np
import pytest

from tests.conftest import TEST_WIDTH, needs_export

pytestmark = needs_export

torch = pytest.importorskip("torch")
F = torch.nn.functional

from overfeat.errors import InputError  # noqa: E402
from overfeat.geometry import ARCHS, output_size, spatial_ops  # noqa: E402


@pytest.mark.parametrize(("arch", "count"), [("fast", 145_920_872), ("accurate", 144_656_488)])
def test_parameter_counts_are_the_papers(arch, count):
    from overfeat.export import build_model

    model = build_model(arch, num_classes=1000, heads=("cls",))
    assert sum(p.numel() for p in model.parameters()) == count


def offsets_reference(model, image):
    """The paper's procedure, literally: pool the last feature map k×k at each of the k²
    offsets (Δy, Δx), run each head on every pooled map, and interleave the k² outputs."""
    k = model.spec.offset_pool
    was_fine = model.fine_stride
    model.set_fine_stride(False)  # heads without dilation: the classifier as trained
    try:
        features = model.features[:-1](image)  # everything but the offset pool
        heads = {
            "scores": model.classifier,
            "boxes": getattr(model, "regressor", None),
            "det_scores": getattr(model, "detector", None),
        }
        out = {}
        for name, head in heads.items():
            if head is None:
                continue
            maps = None
            for dy in range(k):
                for dx in range(k):
                    pooled = F.max_pool2d(features[:, :, dy:, dx:], k, k)
                    y = head(pooled)
                    if maps is None:
                        h = features.shape[-2] - k * model.spec.fc_kernel + 1
                        w = features.shape[-1] - k * model.spec.fc_kernel + 1
                        maps = torch.full((y.shape[0], y.shape[1], h, w), float("nan"))
                    target = maps[:, :, dy::k, dx::k]
                    assert target.shape == y.shape, (name, dy, dx, target.shape, y.shape)
                    maps[:, :, dy::k, dx::k] = y
            assert not torch.isnan(maps).any(), "every fine position comes from exactly one offset"
            out[name] = maps
        return out
    finally:
        model.set_fine_stride(was_fine)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("arch", ["accurate", "fast"])
def test_fine_stride_equals_explicit_offsets_at_every_pyramid_scale(arch):
    from overfeat.export import build_model

    model = build_model(arch, 7, ("cls", "loc", "det"), TEST_WIDTH, seed=3)
    rng = np.random.default_rng(11)
    ops = spatial_ops(model.spec, fine=True)
    for h, w in model.spec.pyramid:
        image = torch.from_numpy(rng.standard_normal((2, 3, h, w), dtype=np.float32))
        with torch.no_grad():
            fine = model(image)
            reference = offsets_reference(model, image)
        for name, expected in reference.items():
            assert fine[name].shape[-2:] == output_size(ops, (h, w)), (name, h, w)
            assert fine[name].shape == expected.shape
            assert _rel(fine[name], expected) <= 1e-5, (arch, name, h, w)


@pytest.mark.parametrize("arch", ["accurate", "fast"])
def test_coarse_mode_is_the_zero_offset(arch):
    from overfeat.export import build_model

    model = build_model(arch, 4, ("cls", "loc"), TEST_WIDTH, seed=4)
    k = model.spec.offset_pool
    rng = np.random.default_rng(5)
    h, w = model.spec.pyramid[2]
    image = torch.from_numpy(rng.standard_normal((1, 3, h, w), dtype=np.float32))
    with torch.no_grad():
        fine = model(image)
        model.set_fine_stride(False)
        coarse = model(image)
    assert not model.fine_stride and model.metadata().stride == model.spec.stride(False)
    assert coarse["scores"].shape[-2:] == output_size(spatial_ops(model.spec, fine=False), (h, w))
    for name in coarse:
        assert _rel(coarse[name], fine[name][:, :, ::k, ::k]) <= 1e-5


def test_shared_regressor_and_head_channels():
    from overfeat.export import build_model

    model = build_model("fast", 3, ("loc", "det"), TEST_WIDTH, loc_per_class=False)
    image = torch.zeros(1, 3, 231, 247).normal_(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(image)
    assert set(out) == {"boxes", "det_scores"}
    assert out["boxes"].shape == (1, 4, 1, 2) and out["det_scores"].shape == (1, 4, 1, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(arch="huge"), "unknown architecture 'huge'"),
        (dict(arch="fast", num_classes=0), "positive integer, got 0"),
        (dict(arch="fast", num_classes=-3), "positive integer, got -3"),
        (dict(arch="fast", heads=("cls", "seg")), "bad heads"),
        (dict(arch="fast", heads=()), "bad heads"),
        (dict(arch="fast", width=0), "width must be in"),
    ],
)
def test_build_model_rejects(kwargs, message):
    from overfeat.export import build_model

    with pytest.raises(InputError, match=message):
        build_model(**kwargs)


def test_input_smaller_than_window():
    from overfeat.export import build_model

    model = build_model("accurate", 2, width=TEST_WIDTH)
    with pytest.raises(InputError, match="220x300, smaller than the model's 221x221 window"):
        model(torch.zeros(1, 3, 220, 300))
    with pytest.raises(InputError, match=r"expected \[N, 3, H, W\]"):
        model(torch.zeros(1, 1, 230, 230))


def test_arch_tables_match_the_modules():
    from overfeat.export import build_model

    for name, spec in ARCHS.items():
        model = build_model(name, 10)
        convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
        assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == [
            (t.kernel, t.stride, t.pad, t.channels) for t in spec.trunk
        ]
        assert model.classifier[0].kernel_size == (spec.fc_kernel,) * 2
