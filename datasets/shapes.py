"""The shapes dataset: procedurally generated images of 10 shape classes with boxes (NumPy only).

Every image is a pure function of (seed, kind, split, index), so any image of any split can be
regenerated alone. Images are 240–600 px per side with textured, noisy backgrounds (a smooth
random colour field, stripes and pixel noise). Objects take 10%–80% of the image's shorter side,
with random aspect (0.6–1.6), rotation (squares and diamonds within ±20°, so that neither is the
other turned by 45°), colour and texture; a third of them are partly hidden by
an occluder, a bar across them (3–13 times as long as wide, so never a member of a class). Kinds:

- ``single``: exactly one object (classification and localization);
- ``multi``: 0–6 objects that may overlap (detection).

The box of an object is the tight box of its *visible* pixels (after later objects and
occluders are drawn over it), as (x1, y1, x2, y2) in pixels. No object is hidden below 40% of
its area: a placement or occluder that would do so is drawn elsewhere or left out, so every
drawn object is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from overfeat.errors import InputError

CLASSES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring", "crescent", "arrow")
KINDS = ("single", "multi")
SPLITS = ("train", "val", "test")
MIN_SIDE, MAX_SIDE = 240, 600
MIN_VISIBLE = 0.4


@dataclass(frozen=True)
class Sample:
    """image: ndarray[H, W, 3] uint8; boxes: ndarray[K, 4] (x1, y1, x2, y2); labels: ndarray[K]."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def _polygon(points: list[tuple[float, float]]) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.arange(2 * points) * np.pi / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_POLYGONS = {
    "triangle": _polygon([(0, -1), (1, 1), (-1, 1)]),
    "hexagon": _star(3, 1.0),
    "star": _star(5, 0.42),
    "arrow": _polygon([(-1, -0.3), (0.2, -0.3), (0.2, -0.85), (1, 0), (0.2, 0.85), (0.2, 0.3), (-1, 0.3)]),
}


def _inside_polygon(p: np.ndarray, q: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule for points (p, q) against a closed polygon."""
    inside = np.zeros(p.shape, dtype=bool)
    x, y = vertices[:, 0], vertices[:, 1]
    for i in range(len(vertices)):
        x1, y1, x2, y2 = x[i - 1], y[i - 1], x[i], y[i]
        if y1 == y2:
            continue
        crosses = (y1 > q) != (y2 > q)
        x_at = x1 + (q - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (p < x_at)
    return inside


def unit_shape(name: str, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Indicator of shape ``name`` in its unit frame [-1, 1]² at points (p, q)."""
    r2 = p * p + q * q
    if name == "circle":
        return r2 <= 1
    if name == "square":
        return (np.abs(p) <= 1) & (np.abs(q) <= 1)
    if name == "diamond":
        return np.abs(p) + np.abs(q) <= 1
    if name == "cross":
        box = (np.abs(p) <= 1) & (np.abs(q) <= 1)
        return box & ((np.abs(p) <= 0.33) | (np.abs(q) <= 0.33))
    if name == "ring":
        return (r2 <= 1) & (r2 >= 0.55**2)
    if name == "crescent":
        return (r2 <= 1) & ((p - 0.45) ** 2 + q * q > 0.8**2)
    return _inside_polygon(p, q, _POLYGONS[name])


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1], [h, w]: coarse noise, bilinearly enlarged."""
    from overfeat.runtime.image import resize

    coarse = rng.uniform(0, 1, (cells, cells, 1)).astype(np.float32)
    return resize(coarse, (h, w))[:, :, 0]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(30, 225, 3)
    image = np.empty((h, w, 3), np.float32)
    for c in range(3):
        image[:, :, c] = base[c] + rng.uniform(30, 90) * (_smooth_field(rng, h, w, int(rng.integers(3, 9))) - 0.5)
    if rng.random() < 0.6:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        image += (rng.uniform(5, 25) * stripes)[:, :, None]
    return image


def _object_pixels(rng, h, w, name, side) -> np.ndarray:
    """Full-image mask of one randomly placed, sized, stretched and rotated shape."""
    size = rng.uniform(0.10, 0.80) * side
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    sx, sy = size * np.sqrt(aspect) / 2, size / np.sqrt(aspect) / 2  # half extents
    # squares and diamonds turn by at most 20°, so that neither becomes the other
    angle = rng.uniform(-np.pi / 9, np.pi / 9) if name in ("square", "diamond") else rng.uniform(0, 2 * np.pi)
    reach = np.hypot(sx, sy)
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    x0, x1 = int(max(0, np.floor(cx - reach))), int(min(w, np.ceil(cx + reach)))
    y0, y1 = int(max(0, np.floor(cy - reach))), int(min(h, np.ceil(cy + reach)))
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    u, v = xx - cx, yy - cy
    cos, sin = np.cos(angle), np.sin(angle)
    p, q = (u * cos + v * sin) / sx, (-u * sin + v * cos) / sy
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = unit_shape(name, p, q)
    return mask


def _bar_over(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Full-image mask of a bar across part of the object ``mask``: a pole in front of it.

    The bar is 3 to 13 times as long as it is wide (no square class member; nothing whose outline
    is a class), through a random point of the object's box, at a random angle; the image edge
    may cut it.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    extent = max(np.ptp(ys), np.ptp(xs), 4)
    cy, cx = rng.uniform(ys.min(), ys.max()), rng.uniform(xs.min(), xs.max())
    half_width, half_length = rng.uniform(0.06, 0.125) * extent, rng.uniform(0.4, 0.8) * extent
    angle = rng.uniform(0, np.pi)
    y0, y1 = int(max(0, np.floor(cy - half_length))), int(min(h, np.ceil(cy + half_length)))
    x0, x1 = int(max(0, np.floor(cx - half_length))), int(min(w, np.ceil(cx + half_length)))
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    bar = np.zeros((h, w), dtype=bool)
    bar[y0:y1, x0:x1] = (np.abs(u) <= half_length) & (np.abs(v) <= half_width)
    return bar


def _colour_far_from(rng, reference: np.ndarray) -> np.ndarray:
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - reference) > 90:
            return colour
    return 255 - reference


def generate(seed: int, kind: str, split: str, index: int) -> Sample:
    """The image ``index`` of a split; the same arguments always give the same image."""
    if kind not in KINDS or split not in SPLITS:
        raise InputError(f"kind {kind!r} / split {split!r}: expected a kind in {KINDS} and a split in {SPLITS}")
    rng = np.random.default_rng([seed, KINDS.index(kind), SPLITS.index(split), index])
    while True:
        sample = _draw(rng, kind)
        if sample is not None:
            return sample


def _keeps_visible(owner: np.ndarray, cover: np.ndarray, areas: dict[int, int]) -> bool:
    """Whether every object drawn so far stays at least MIN_VISIBLE visible under ``cover``."""
    return all(np.count_nonzero((owner == k) & ~cover) >= MIN_VISIBLE * area for k, area in areas.items())


def _draw(rng: np.random.Generator, kind: str) -> Sample | None:
    h, w = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
    image = _background(rng, h, w)
    count = 1 if kind == "single" else int(rng.integers(0, 7))
    owner = np.full((h, w), -1, dtype=np.int64)
    areas: dict[int, int] = {}
    labels: dict[int, int] = {}
    for k in range(count):
        label = int(rng.integers(len(CLASSES)))
        for _ in range(10):  # a placement that hides no earlier object too much
            mask = _object_pixels(rng, h, w, CLASSES[label], min(h, w))
            if mask.any() and _keeps_visible(owner, mask, areas):
                break
        else:
            continue
        colour = _colour_far_from(rng, image[mask].mean(axis=0))
        texture = rng.uniform(4, 20) * (_smooth_field(rng, h, w, 12) - 0.5)[:, :, None]
        image[mask] = colour + texture[mask]
        owner[mask] = k
        areas[k], labels[k] = int(mask.sum()), label
        if rng.random() < 1 / 3:  # an occluder over part of the object
            occ = _bar_over(rng, mask)
            if _keeps_visible(owner, occ, areas):
                image[occ] = _colour_far_from(rng, colour)
                owner[occ] = -1
    if kind == "single" and not areas:
        return None  # redraw: a single-object image must show its object
    image += rng.normal(0, rng.uniform(3, 10), image.shape)
    boxes = []
    for k in areas:
        ys, xs = np.nonzero(owner == k)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return Sample(
        pixels, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray([labels[k] for k in areas], dtype=np.int64)
    )
