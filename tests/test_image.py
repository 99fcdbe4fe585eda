"""Image files and arrays in, and the shared resampling (checked against Pillow's)."""

from importlib.util import find_spec

import numpy as np
import pytest

from overfeat.errors import InputError
from overfeat.runtime.image import as_rgb, load_image, resize

pytestmark = pytest.mark.skipif(find_spec("PIL") is None, reason="needs Pillow (the 'images' extra)")


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_modes_are_converted_to_rgb(tmp_path, rgb):
    from PIL import Image

    base = Image.fromarray(rgb)
    cases = {
        "rgb.png": base,
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "palette.png": base.convert("P"),
        "cmyk.jpg": base.convert("CMYK"),
        "gray16.png": Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        array = load_image(tmp_path / name)
        assert array.shape == (40, 60, 3), name
        assert array.dtype in (np.uint8, np.float32), name
    assert np.array_equal(load_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
    gray = load_image(tmp_path / "gray.png")
    assert np.array_equal(gray[:, :, 0], gray[:, :, 2])
    np.testing.assert_allclose(load_image(tmp_path / "gray16.png")[:, :, 0], rgb[:, :, 0], atol=1e-3)  # 16 bit / 257


def test_unreadable_files(tmp_path, rgb):
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="truncated.png is truncated or corrupt"):
        load_image(tmp_path / "truncated.png")
    for name in ("text.jpg", "empty.png"):
        with pytest.raises(InputError, match=f"{name} is not an image file"):
            load_image(tmp_path / name)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="40x60 = 2,400 pixels, more than the limit of 1,000"):
        load_image(tmp_path / "ok.png", max_pixels=1000)


def test_arrays(rgb):
    assert as_rgb(rgb[:, :, 0]).shape == (40, 60, 3)
    assert as_rgb(rgb[:, :, :1]).shape == (40, 60, 3)
    assert np.array_equal(as_rgb(np.dstack([rgb, rgb[:, :, :1]])), rgb)
    assert as_rgb(rgb.astype(np.float64)).dtype == np.float32
    np.testing.assert_allclose(as_rgb(rgb.astype(np.uint16) * 257), rgb, atol=1e-4)


@pytest.mark.parametrize("size", [(461, 569), (245, 245), (25, 19), (40, 60), (400, 33), (1000, 1500)])
def test_resize_equals_pillows_bilinear(size):
    from PIL import Image

    image = np.random.default_rng(sum(size)).uniform(0, 255, (40, 60)).astype(np.float32)
    ours = resize(image[:, :, None], size)[:, :, 0]
    theirs = np.asarray(Image.fromarray(image, mode="F").resize(size[::-1], Image.BILINEAR))
    assert ours.shape == size
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_resize_keeps_constants_and_rejects_empty_targets(rgb):
    flat = np.full((31, 47, 3), 77, np.uint8)
    np.testing.assert_allclose(resize(flat, (245, 300)), 77, atol=1e-4)
    with pytest.raises(InputError, match="at least 1x1"):
        resize(rgb, (0, 10))


def test_dark_16_bit_images_are_scaled_too(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark16.png")
    assert Image.open(tmp_path / "dark16.png").mode.startswith("I")
    np.testing.assert_allclose(load_image(tmp_path / "dark16.png"), 200 / 257, rtol=1e-6)
