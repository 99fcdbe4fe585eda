import pytest

from overfeat.errors import InputError
from overfeat.geometry import ACCURATE, ARCHS, FAST, derive_pyramid, get_arch, min_input, output_size, parse_size, spatial_ops

# The paper's pyramid for the accurate model and its dense maps at stride 12 (DESIGN.md).
PAPER_MAPS = [(3, 3), (6, 9), (9, 15), (15, 21), (18, 24), (21, 30)]


def test_accurate_pyramid_gives_the_papers_dense_maps():
    ops = spatial_ops(ACCURATE, fine=True)
    assert [output_size(ops, s) for s in ACCURATE.pyramid] == PAPER_MAPS


@pytest.mark.parametrize(
    ("spec", "fine", "stride"), [(ACCURATE, True, 12), (ACCURATE, False, 36), (FAST, True, 16), (FAST, False, 32)]
)
def test_strides_and_windows(spec, fine, stride):
    ops = spatial_ops(spec, fine)
    assert spec.stride(fine) == stride
    assert min_input(ops) == spec.window
    assert output_size(ops, (spec.window, spec.window)) == (1, 1)
    # One more stride of input gives exactly one more output.
    assert output_size(ops, (spec.window + stride, spec.window + 2 * stride)) == (2, 3)


def test_fast_pyramid_is_derived_from_the_accurate_one():
    assert FAST.pyramid == ((263, 263), (295, 327), (327, 407), (407, 487), (439, 519), (487, 599))
    for h, w in FAST.pyramid:
        assert (h - 231) % 16 == 0 and (w - 231) % 16 == 0
    # The derivation applied to the accurate model itself is the identity.
    assert derive_pyramid(ACCURATE, ACCURATE.window, ACCURATE.stride()) == ACCURATE.pyramid


def test_unknown_arch_lists_known_ones():
    with pytest.raises(InputError, match="unknown architecture 'big'.*accurate, fast"):
        get_arch("big")
    assert set(ARCHS) == {"fast", "accurate"}


@pytest.mark.parametrize(
    ("text", "size"), [("300x333", (300, 333)), ("245", (245, 245)), ("281×317", (281, 317)), ("12X7", (12, 7))]
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "3x", "0x5", "-3x4", "1x2x3", "axb"])
def test_parse_size_rejects(text):
    with pytest.raises(InputError, match="expected HEIGHTxWIDTH"):
        parse_size(text)
