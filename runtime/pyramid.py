"""Multi-scale pyramids and the batch each scale runs as.

A pyramid is a list of input sizes (H, W). Each scale resizes the whole image to exactly that
size (both axes scaled independently) with :func:`overfeat.runtime.image.resize`.

- ``"paper"``: the model's six sizes (``overfeat.pyramid``), oriented to the image: a portrait
  image (taller than wide) gets each size transposed.
- ``"aspect"``: the paper sizes' short sides (245, 281, … for the accurate model), the long
  side following the image's aspect ratio, so nothing is distorted (ratios beyond 4:1 are
  squeezed to 4:1, to bound the work).
- an integer N (1–6): N of the oriented paper sizes, evenly spaced from the smallest to the
  largest (N = 1 takes the middle one, 317×389 for the accurate model).
- a list of (H, W): used as given.

Every size is at least the model's window, so small images are upscaled. Each scale's batch is
the image and, unless ``flip`` is off, its horizontal mirror: [2, 3, H, W] float32, normalised
with the model's mean and std.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from overfeat import limits
from overfeat.errors import InputError
from overfeat.limits import forward_bytes
from overfeat.metadata import MAX_SCALES, MAX_SIDE, ModelMeta

from .image import filter_taps, resize
from .kernels import compiled, resolve_kernel

PyramidSpec = str | int | Sequence[tuple[int, int]]
MAX_ASPECT = 4.0


@dataclass(frozen=True)
class Scale:
    """One pyramid level: input size and the resize factors from the original image."""

    size: tuple[int, int]  # (H, W) fed to the network
    factor: tuple[float, float]  # (H / image height, W / image width)
    image: tuple[int, int]  # the original image's (height, width)


def pyramid_sizes(spec: PyramidSpec, meta: ModelMeta, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """The input sizes for an image of ``image_size`` (height, width)."""
    h, w = image_size
    portrait = h > w
    paper = [(b, a) if portrait else (a, b) for a, b in meta.pyramid]
    if isinstance(spec, str):
        if spec == "paper":
            sizes = paper
        elif spec == "aspect":
            sizes = []
            for size in meta.pyramid:
                short = min(size)
                long = max(short, round(short * min(max(h, w) / min(h, w), MAX_ASPECT)))
                sizes.append((long, short) if portrait else (short, long))
        else:
            raise InputError(f"unknown pyramid {spec!r}: expected 'paper', 'aspect', a number of scales or a list of HxW sizes")
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if not 1 <= spec <= len(paper):
            raise InputError(f"pyramid of {spec} scales: expected 1 to {len(paper)}")
        picks = [(len(paper) - 1) // 2] if spec == 1 else np.round(np.linspace(0, len(paper) - 1, spec)).astype(int).tolist()
        sizes = [paper[i] for i in picks]
    else:
        try:
            sizes = [(int(a), int(b)) for a, b in spec]
        except (TypeError, ValueError):
            raise InputError(
                f"bad pyramid {spec!r}: expected 'paper', 'aspect', a number of scales or a list of (H, W)"
            ) from None
        if not sizes:
            raise InputError("the pyramid is empty: give at least one size")
    smallest = min(a for size in sizes for a in size)
    if smallest < meta.window:
        raise InputError(f"pyramid size {sizes} has a side of {smallest}, below the model's {meta.window}-pixel window")
    largest = max(a for size in sizes for a in size)
    if largest > MAX_SIDE:
        raise InputError(f"pyramid size {sizes} has a side of {largest}, above the largest input side, {MAX_SIDE} pixels")
    if len(sizes) > MAX_SCALES:
        raise InputError(f"the pyramid has {len(sizes)} sizes, at most {MAX_SCALES}")
    return sizes


def check_memory(sizes: list[tuple[int, int]], meta: ModelMeta, flip: bool) -> None:
    """Refuse a pyramid whose largest scale would need more memory than the limit
    (:mod:`overfeat.limits`): the batch and the network's activations, counted at full width."""
    h, w = max(sizes, key=lambda s: s[0] * s[1])
    need = forward_bytes(meta.arch, (h, w), 2 if flip else 1, 1.0, meta.fine_stride)
    limits.check_memory(need, f"the pyramid scale {h}x{w}{' with its mirror' if flip else ''} (`pyramid`)")


def scales(spec: PyramidSpec, meta: ModelMeta, image_size: tuple[int, int]) -> list[Scale]:
    h, w = image_size
    return [Scale(size, (size[0] / h, size[1] / w), (h, w)) for size in pyramid_sizes(spec, meta, image_size)]


def make_batch(image: np.ndarray, size: tuple[int, int], meta: ModelMeta, flip: bool, kernel: str = "auto") -> np.ndarray:
    """Resize image [H, W, 3] to ``size`` and normalise: [2 or 1, 3, h, w] float32 (image,
    mirror). ``kernel`` (:mod:`overfeat.runtime.kernels`): the compiled kernel gives the same
    values, bit for bit, in one pass."""
    return next(_batches(image, [size], meta, flip, kernel))


def pyramid_batches(
    image: np.ndarray, spec: PyramidSpec, meta: ModelMeta, flip: bool, kernel: str = "auto"
) -> Iterator[tuple[Scale, np.ndarray]]:
    """Each scale of an RGB image [H, W, 3] with the batch it runs as: the one preprocessing
    path shared by the runtime and INT8 calibration. Batches are made as they are asked for."""
    levels = scales(spec, meta, image.shape[:2])
    check_memory([level.size for level in levels], meta, flip)
    yield from zip(levels, _batches(image, [level.size for level in levels], meta, flip, kernel), strict=True)


def _batches(image: np.ndarray, sizes: list[tuple[int, int]], meta: ModelMeta, flip: bool, kernel: str) -> Iterator[np.ndarray]:
    mean = np.asarray(meta.mean, dtype=np.float32)
    inv_std = (1.0 / np.asarray(meta.std, dtype=np.float64)).astype(np.float32)
    if resolve_kernel(kernel) == "compiled":
        resample = compiled().resize
        planes = resample.planes(np.ascontiguousarray(image, dtype=np.float32))  # once for every size
        for h, w in sizes:
            if h < 1 or w < 1:
                raise InputError(f"resize target {h}x{w} must be at least 1x1")
            yield resample.batch(planes, *filter_taps(image.shape[0], h), *filter_taps(image.shape[1], w), mean, inv_std, flip)
        return
    for size in sizes:
        resized = resize(image, size)
        batch = np.empty((2 if flip else 1, 3, *resized.shape[:2]), dtype=np.float32)
        np.subtract(resized.transpose(2, 0, 1), mean[:, None, None], out=batch[0])  # written in place: no temporaries
        batch[0] *= inv_std[:, None, None]
        if flip:
            batch[1] = batch[0][:, :, ::-1]
        yield batch
