"""Draw results onto their image and save a PNG (needs Pillow, extra ``images``).

A picture shows the result's best reading, not every box: merged detections carry accumulated
scores, and next to a confident box there are often many weak partial clusters (scores of a few
units against hundreds) and lower-ranked boxes over the same object. :func:`shown` picks the
boxes to draw; the JSON output keeps them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from overfeat.errors import InputError, positive_int
from overfeat.fileio import atomic_path

from .boxes import iou
from .results import BoxResult, Result

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
]

FLOOR = 0.05  # boxes scoring below this fraction of the best box are not drawn
OVERLAP = 0.5  # a box overlapping a better drawn box by IoU ≥ this is not drawn
MAX_BOXES = 20


def check_draw_options(floor: float, overlap: float, max_boxes: int) -> None:
    """Raise an InputError unless floor and overlap are within 0..1 and max_boxes ≥ 1."""
    for name, value in (("floor", floor), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"the drawing's `{name}` must be within 0..1, got {value!r}")
    positive_int("drawing max_boxes", max_boxes)


def shown(
    boxes: Sequence[BoxResult], floor: float = FLOOR, overlap: float = OVERLAP, max_boxes: int = MAX_BOXES
) -> list[BoxResult]:
    """The boxes a picture shows, best first.

    In the given order (results come sorted by score), a box is shown when its score is at
    least ``floor`` × the best score (when that is positive) and its IoU with every box already
    shown, of any class, is below ``overlap``; at most ``max_boxes``. ``floor=0`` with
    ``overlap=1`` shows the first ``max_boxes`` as they are.
    """
    check_draw_options(floor, overlap, max_boxes)
    scores = [b.score for b in boxes if np.isfinite(b.score)]
    best = max(scores, default=0.0)
    least = floor * best if floor > 0 and best > 0 else -np.inf  # no floor without a positive best
    picked: list[BoxResult] = []
    for box in boxes:
        if len(picked) == max_boxes:
            break
        if box.score < least:
            continue
        if picked and overlap < 1 and iou(np.asarray([box.box]), np.asarray([b.box for b in picked])).max() >= overlap:
            continue
        picked.append(box)
    return picked


def draw(
    image: np.ndarray,
    result: Result,
    path: str | os.PathLike[str],
    max_boxes: int = MAX_BOXES,
    floor: float = FLOOR,
    overlap: float = OVERLAP,
) -> Path:
    """Write ``image`` (RGB [H, W, 3]) with the result's shown boxes (:func:`shown`), names and
    scores as a PNG; when boxes are left out, a caption says how many are shown."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ModuleNotFoundError:
        raise InputError("drawing results needs Pillow: pip install 'overfeat[images]'") from None
    picked = shown(result.boxes, floor, overlap, max_boxes)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(canvas)
    size = max(12, min(canvas.size) // 40)
    font = ImageFont.load_default(size)
    width = max(2, min(canvas.size) // 200)
    for box in reversed(picked):  # best drawn last, on top
        colour = _PALETTE[box.label % len(_PALETTE)]
        x1, y1, x2, y2 = box.box
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        _label(pen, (max(x1, 0), max(y1, 0)), f"{box.name} {box.score:.2f}", colour, font)
    if result.task == "classify":
        for rank, c in enumerate(result.classes):
            _label(
                pen, (4, 4 + rank * (size + 6)), f"{rank + 1}. {c.name} {c.score:.2f}", _PALETTE[c.label % len(_PALETTE)], font
            )
    elif len(picked) < len(result.boxes):
        caption = f"{len(picked)} of {len(result.boxes)} boxes shown"
        _label(pen, (4, canvas.size[1] - size - 6), caption, (40, 40, 40), font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _label(pen, xy, text, colour, font) -> None:
    left, top, right, bottom = pen.textbbox(xy, text, font=font)
    pen.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=colour)
    dark = sum(colour) > 380
    pen.text(xy, text, fill=(0, 0, 0) if dark else (255, 255, 255), font=font)
