"""Images in: files and arrays to RGB, and the resampling every consumer shares.

**Conversions (documented behaviour).** Grayscale becomes RGB by repeating the channel;
alpha is dropped (the colour channels are used as they are); palette and CMYK images are
converted to RGB; 16-bit images are scaled to 0–255 (value / 257; 32-bit integer images only when a value exceeds 255); EXIF orientation is applied.
Arrays may be uint8, uint16 (scaled likewise) or float (finite, 0–255), shaped [H, W],
[H, W, 1], [H, W, 3] or [H, W, 4]. Images larger than ``max_pixels`` are refused before they
are decoded, to guard memory.

**Resampling.** :func:`resize` is a separable triangle filter with pixel centres aligned
(half-pixel convention): plain bilinear interpolation when enlarging, and, when shrinking, a
filter widened by the scale factor so every input pixel contributes (antialiased), like
Pillow's ``BILINEAR``. Edges are handled by renormalising the weights. The runtime's pyramid
and INT8 calibration both use this one function.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from overfeat.errors import InputError
from overfeat.limits import check_memory, image_bytes

DEFAULT_MAX_PIXELS = 64_000_000


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an RGB uint8 array [H, W, 3] (needs Pillow, extra ``images``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist or is not a file")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ModuleNotFoundError:
        raise InputError("reading image files needs Pillow: pip install 'overfeat[images]' (or pass a NumPy array)") from None
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # the caller's own limit, checked below, decides; Pillow's may only rise
    try:
        with Image.open(path) as img:
            w, h = img.size
            _check_size(h, w, max_pixels, str(path))
            check_memory(image_bytes(h * w), f"image {path} ({w}x{h})")
            img.load()
            img = ImageOps.exif_transpose(img)
            return as_rgb(_pil_to_array(img), max_pixels, str(path))
    except InputError:  # our own size check: a ValueError, but not a corrupt file
        raise
    except UnidentifiedImageError:
        raise InputError(f"image {path} is not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"image {path} is larger than Pillow's decompression-bomb limit ({exc}); raise `max_pixels` if it is intended"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {path} is truncated or corrupt ({str(exc)[:120]})") from None


def _pil_to_array(img) -> np.ndarray:
    if img.mode.startswith("I;16"):
        return (np.asarray(img, dtype=np.float64) / 257.0).astype(np.float32)
    if img.mode == "I":  # 32-bit integer pixels: 16-bit data when any value exceeds 8 bits
        data = np.asarray(img, dtype=np.float64)
        return np.clip(data / 257.0 if data.max(initial=0) > 255 else data, 0, 255).astype(np.float32)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return np.asarray(img)


def _check_size(h: int, w: int, max_pixels: int, source: str) -> None:
    if h <= 0 or w <= 0:
        raise InputError(f"{source}: image is {h}x{w}, expected at least 1x1 pixels")
    if h * w > max_pixels:
        raise InputError(
            f"{source}: image is {h}x{w} = {h * w:,} pixels, more than the limit of {max_pixels:,}; raise `max_pixels` if this is intended"
        )


def as_rgb(image: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "image") -> np.ndarray:
    """Validate an image array and return it as [H, W, 3] (uint8, or float32 for float input)."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{source}: got {type(image).__name__}, expected a NumPy array [H, W, 3] or an image path")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(f"{source}: array has shape {list(image.shape)}, expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]")
    _check_size(image.shape[0], image.shape[1], max_pixels, source)
    if image.dtype == np.uint16:
        image = (image / 257.0).astype(np.float32)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise InputError(f"{source}: array contains NaN or inf, expected finite pixel values 0–255")
        if image.min() < 0 or image.max() > 255:
            raise InputError(f"{source}: float pixel values span {image.min():g}..{image.max():g}, expected 0–255")
        image = image.astype(np.float32, copy=False)
    elif image.dtype != np.uint8:
        raise InputError(f"{source}: array has dtype {image.dtype}, expected uint8 (or uint16, or float 0–255)")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


@functools.lru_cache(maxsize=256)
def filter_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [n_out, K] and weights [n_out, K] of the triangle filter for one axis. Each row
    starts at its first input pixel of nonzero weight; rows with fewer than K such pixels end
    in zero weights. Cached (a pyramid asks for the same few) and read-only."""
    scale = n_in / n_out
    support = max(scale, 1.0)  # filter half-width in input pixels
    centre = (np.arange(n_out) + 0.5) * scale  # output pixel centres in input coordinates
    first = np.floor(centre - support).astype(np.int64)
    k = int(np.ceil(2 * support)) + 2
    index = first[:, None] + np.arange(k)[None, :]
    weight = np.maximum(0.0, 1.0 - np.abs((index + 0.5 - centre[:, None]) / support))
    weight[(index < 0) | (index >= n_in)] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    # drop the taps of zero weight (half of them when enlarging): the sums are unchanged
    nonzero = weight > 0
    start, count = nonzero.argmax(axis=1), nonzero.sum(axis=1)
    columns = np.minimum(start[:, None] + np.arange(int(count.max())), k - 1)
    weight = np.take_along_axis(weight, columns, axis=1)
    weight[np.arange(columns.shape[1])[None, :] >= count[:, None]] = 0.0
    index = np.clip(np.take_along_axis(index, columns, axis=1), 0, n_in - 1)
    weight = weight.astype(np.float32)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample image: ndarray[H, W, C] to ndarray[h, w, C] float32 (h, w = ``size``)."""
    out_h, out_w = size
    if out_h < 1 or out_w < 1:
        raise InputError(f"resize target {out_h}x{out_w} must be at least 1x1")
    data = image.astype(np.float32, copy=False)
    index, weight = filter_taps(data.shape[0], out_h)
    rows = _accumulate(data, index, weight, axis=0)
    index, weight = filter_taps(data.shape[1], out_w)
    return _accumulate(rows, index, weight, axis=1)


def _accumulate(data: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """Weighted sum of K gathered slices along ``axis``: one tap at a time, in place, to bound
    memory."""
    shape = [1] * data.ndim
    shape[axis] = len(index)
    out = np.take(data, index[:, 0], axis=axis, mode="clip")  # the indices are in range: "clip" skips the check and a buffer
    out *= weight[:, 0].reshape(shape)
    tap = None
    for k in range(1, index.shape[1]):
        tap = np.take(data, index[:, k], axis=axis, out=tap, mode="clip")
        tap *= weight[:, k].reshape(shape)
        out += tap
    return out
