"""COCO-style datasets: write the shapes data, read any COCO-style detection dataset back.

Layout written by :func:`write_shapes`: ``DIR/<split>/<index>.png`` and ``DIR/<split>.json``
(COCO: ``images``, ``annotations`` with ``bbox`` = [x, y, width, height], ``categories``
numbered from 1). The JSON is written last and atomically: a split without it is incomplete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overfeat.errors import InputError
from overfeat.fileio import write_json
from overfeat.progress import Progress

from .png import encode_png
from .shapes import CLASSES, generate


@dataclass(frozen=True)
class Record:
    """One image: its file, boxes ndarray[K, 4] (x1, y1, x2, y2) and labels ndarray[K] (0-based)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Dataset:
    classes: tuple[str, ...]
    records: tuple[Record, ...]


def write_shapes(
    out: str | os.PathLike[str], split: str, count: int, seed: int, kind: str = "single", progress: Progress | None = None
) -> Path:
    """Generate ``count`` images of a split into ``out``; returns the JSON's path."""
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    out = Path(out)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(enabled=False)
    images, annotations = [], []
    for index in progress.track(range(count), f"shapes {kind}/{split}", total=count):
        sample = generate(seed, kind, split, index)
        name = f"{split}/{index:06d}.png"
        (out / name).write_bytes(encode_png(sample.image))
        h, w = sample.image.shape[:2]
        images.append({"id": index + 1, "file_name": name, "width": w, "height": h})
        for box, label in zip(sample.boxes.tolist(), sample.labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    info = {"description": f"overfeat shapes, kind {kind}, split {split}, seed {seed}", "kind": kind, "seed": seed}
    return write_json(
        out / f"{split}.json", {"info": info, "images": images, "annotations": annotations, "categories": categories}
    )


def find_split(data: str | os.PathLike[str], split: str | None = None) -> Path:
    """The COCO JSON named by ``data``: the file itself, ``DIR/<split>.json``, or DIR's only JSON."""
    data = Path(data)
    if data.is_file():
        if split:
            raise InputError(f"`split` {split} applies to a dataset directory; {data} is a file")
        return data
    if not data.is_dir():
        raise InputError(f"dataset {data} does not exist: give a COCO JSON file or a directory holding one")
    if split:
        path = data / f"{split}.json"
        if not path.is_file():
            raise InputError(f"dataset {data} has no {split}.json (written by 'overfeat datasets shapes --split {split}')")
        return path
    found = sorted(data.glob("*.json"))
    if len(found) != 1:
        names = ", ".join(p.stem for p in found) or "none"
        raise InputError(f"dataset directory {data} holds {len(found)} JSON files ({names}); choose one with `split`")
    return found[0]


def read_coco(path: str | os.PathLike[str]) -> Dataset:
    """Read a COCO-style JSON (image paths relative to its directory). Crowd boxes are skipped."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = sorted(data["categories"], key=lambda c: c["id"])
        label_of = {c["id"]: i for i, c in enumerate(categories)}
        per_image: dict[int, list] = {img["id"]: [] for img in data["images"]}
        for ann in data.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            per_image[ann["image_id"]].append(([x, y, x + w, y + h], label_of[ann["category_id"]]))
        records = tuple(
            Record(
                path.parent / img["file_name"],
                int(img["width"]),
                int(img["height"]),
                np.asarray([b for b, _ in per_image[img["id"]]], dtype=np.float64).reshape(-1, 4),
                np.asarray([label for _, label in per_image[img["id"]]], dtype=np.int64),
            )
            for img in data["images"]
        )
        return Dataset(tuple(str(c["name"]) for c in categories), records)
    except FileNotFoundError:
        raise InputError(f"dataset {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"dataset {path} is not readable JSON ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"dataset {path} is not COCO-style: missing or malformed {exc} (expected images, annotations with bbox [x, y, w, h], categories)"
        ) from None
