"""Draw results onto their image and save a PNG (needs Pillow, extra ``images``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from overfeat.errors import InputError
from overfeat.fileio import atomic_path

from .results import Result

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def draw(image: np.ndarray, result: Result, path: str | os.PathLike[str], max_boxes: int = 20) -> Path:
    """Write ``image`` (RGB [H, W, 3]) with the result's boxes, names and scores as a PNG."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ModuleNotFoundError:
        raise InputError("drawing results needs Pillow: pip install 'overfeat[images]'") from None
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(canvas)
    size = max(12, min(canvas.size) // 40)
    font = ImageFont.load_default(size)
    width = max(2, min(canvas.size) // 200)
    for box in reversed(result.boxes[:max_boxes]):  # best drawn last, on top
        colour = _PALETTE[box.label % len(_PALETTE)]
        x1, y1, x2, y2 = box.box
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        _label(pen, (max(x1, 0), max(y1, 0)), f"{box.name} {box.score:.2f}", colour, font)
    if result.task == "classify":
        for rank, c in enumerate(result.classes):
            _label(pen, (4, 4 + rank * (size + 6)), f"{rank + 1}. {c.name} {c.score:.2f}", _PALETTE[c.label % len(_PALETTE)], font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _label(pen, xy, text, colour, font) -> None:
    left, top, right, bottom = pen.textbbox(xy, text, font=font)
    pen.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=colour)
    dark = sum(colour) > 380
    pen.text(xy, text, fill=(0, 0, 0) if dark else (255, 255, 255), font=font)
