"""COCO-style datasets: write the shapes data, read any COCO-style detection dataset back.

Layout written by :func:`write_shapes`: ``DIR/<split>/<index>.png`` and ``DIR/<split>.json``
(COCO: ``images``, ``annotations`` with ``bbox`` = [x, y, width, height], ``categories``
numbered from 1). A split is generated into a hidden folder beside it and swapped in by
renames once complete, so an interrupted run leaves the old split (or, on a first run, none):
never a JSON that describes other images.

COCO files are untrusted input. :func:`read_coco` checks the ground truth before anything uses
it: the file's size (at most :data:`MAX_JSON_BYTES`), the type of every field it reads, known
and unique ids, and boxes that are finite, of positive width and height and inside their image
within :data:`BOX_SLACK` pixels. :func:`check_images` checks that the images exist, can be
opened and have the sizes their records give (reading headers only).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overfeat.errors import InputError
from overfeat.fileio import remove_stale, work_dir, write_json
from overfeat.progress import Progress

from .png import encode_png
from .shapes import CLASSES, KINDS, SPLITS, generate

MAX_JSON_BYTES = 256 * 2**20  # a COCO file larger than this is refused before it is parsed
MAX_IMAGES = 1_000_000  # images, annotations and categories a COCO file may hold
MAX_ANNOTATIONS = 10_000_000
MAX_CATEGORIES = 10_000
MAX_SIDE = 65_535  # an image record's width and height
BOX_SLACK = 1.0  # pixels a box may reach beyond its image's edges
MAX_COUNT = 1_000_000  # images of one generated split
MAX_SEED = 2**32 - 1  # as the command line's seeds
SHOWN = 5  # problems a message names before it counts the rest


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
    """Generate ``count`` images of a split into ``out``; returns the JSON's path.

    Everything is checked before anything is created. The split is generated into a hidden
    folder in ``out`` and swapped in by renames when complete; an existing ``out/<split>``
    folder is replaced only if it holds nothing but a split's images.
    """
    _check_shapes_arguments(split, count, seed, kind)
    out = _dataset_directory(out)
    _check_replaceable(out, split)
    remove_stale(out, f".overfeat-{split}-old-")  # what a run killed while swapping left
    try:
        with work_dir(f"{split}-new", out) as work:
            (work / split).mkdir()  # ordinary permissions; the scratch folder is private
            document = _generate_split(work, split, count, seed, kind, progress or Progress(enabled=False))
            write_json(work / f"{split}.json", document)
            _swap_in(out, split, work)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise InputError(f"`out` {out} is not writable ({exc.strerror})") from None
        raise InputError(
            f"writing split {split} into {out} failed ({exc.strerror or exc}); the previous split is unchanged"
        ) from None
    return out / f"{split}.json"


def _check_shapes_arguments(split: str, count: int, seed: int, kind: str) -> None:
    if kind not in KINDS or split not in SPLITS:
        raise InputError(f"kind {kind!r} / split {split!r}: expected a kind in {KINDS} and a split in {SPLITS}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InputError(f"`count` must be an integer from 1 to {MAX_COUNT:,}, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"`seed` must be an integer from 0 to {MAX_SEED}, got {seed!r}")


def _dataset_directory(out: str | os.PathLike[str]) -> Path:
    """``out`` as a writable directory, created if missing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"`out` {out} is a file, expected a dataset directory (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"`out` {out} cannot be created ({exc.strerror}); give a directory you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"`out` {out} is not writable; give a directory you can write to")
    return out


_IMAGE_NAME = re.compile(r"\d{6}\.png")


def _check_replaceable(out: Path, split: str) -> None:
    """Refuse to replace a ``<split>`` folder or ``<split>.json`` that is not a generated split's."""
    folder, document = out / split, out / f"{split}.json"
    if document.is_dir() or (document.exists() and not document.is_file()):
        raise InputError(f"{document} exists and is not a file; move it away or choose another `out`")
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder of a split's images; move it away or choose another `out`")
    with os.scandir(folder) as entries:
        foreign = sorted(e.name for e in entries if not (e.is_file(follow_symlinks=False) and _IMAGE_NAME.fullmatch(e.name)))
    if foreign:
        raise InputError(
            f"{folder} holds files other than a split's images ({', '.join(foreign[:SHOWN])}); the split would replace the "
            "folder: move them away or choose another `out`"
        )


def _generate_split(work: Path, split: str, count: int, seed: int, kind: str, progress: Progress) -> dict:
    """Write the images into ``work/<split>``; the COCO document that describes them."""
    images, annotations = [], []
    for index in progress.track(range(count), f"shapes {kind}/{split}", total=count):
        sample = generate(seed, kind, split, index)
        name = f"{split}/{index:06d}.png"
        (work / name).write_bytes(encode_png(sample.image))
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
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _swap_in(out: Path, split: str, work: Path) -> None:
    """Replace ``out/<split>`` and ``out/<split>.json`` by ``work``'s, by renames.

    The old JSON goes first and the new one comes last, so no JSON ever sits beside images it
    does not describe; an exception (an interrupt included) part-way undoes the renames made.
    The old split is deleted only once the new one is in place.
    """
    old = Path(tempfile.mkdtemp(prefix=f".overfeat-{split}-old-{os.getpid()}-", dir=out))
    steps = [
        (out / f"{split}.json", old / f"{split}.json"),
        (out / split, old / split),
        (work / split, out / split),
        (work / f"{split}.json", out / f"{split}.json"),
    ]
    done: list[tuple[Path, Path]] = []
    try:
        for source, target in steps:
            if source.exists() or source.is_symlink():
                os.rename(source, target)
                done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            os.rename(target, source)
        old.rmdir()  # empty again; if undoing failed, what it holds stays
        raise
    shutil.rmtree(old, ignore_errors=True)


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
    """Read a COCO-style JSON (image paths relative to its directory), its ground truth checked
    (see the module documentation). Crowd boxes are checked, then skipped."""
    path = Path(path)
    data = _load_json(path)
    images, annotations, categories = _sections(path, data)
    problems: list[str] = []
    label_of = _check_categories(categories, problems)
    image_of, refused = _check_images(images, problems)
    boxes = _check_annotations(annotations, image_of, refused, label_of, problems)
    what = "problem" if len(problems) == 1 else "problems"
    _refuse(f"dataset {path} has bad ground truth ({len(problems)} {what})", problems, "fix the file or leave those entries out")
    per_image: dict[int, list] = {img["id"]: [] for img in images}
    for image_id, box, label in boxes:
        per_image[image_id].append((box, label))
    records = tuple(
        Record(
            path.parent / img["file_name"],
            int(img["width"]),
            int(img["height"]),
            np.asarray([b for b, _ in per_image[img["id"]]], dtype=np.float64).reshape(-1, 4),
            np.asarray([label for _, label in per_image[img["id"]]], dtype=np.int64),
        )
        for img in images
    )
    return Dataset(tuple(c["name"] for c in sorted(categories, key=lambda c: c["id"])), records)


def _refuse(subject: str, problems: list[str], advice: str) -> None:
    """Raise one InputError (one line) naming the first :data:`SHOWN` problems and counting the rest."""
    if problems:
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        text = f"{subject}: {'; '.join(problems[:SHOWN])}{more}; {advice}"
        raise InputError(" ".join(text.splitlines()))


def _load_json(path: Path):
    """The parsed JSON of ``path``, refused unread if it is larger than :data:`MAX_JSON_BYTES`."""
    try:
        info = path.stat()
        if not path.is_file():
            raise InputError(f"dataset {path} is not a file; give a COCO JSON file")
        if info.st_size > MAX_JSON_BYTES:
            raise InputError(
                f"dataset {path} is {info.st_size:,} bytes, more than the limit of {MAX_JSON_BYTES:,} "
                f"({MAX_JSON_BYTES // 2**20} MiB) for a COCO file; split the dataset into several files"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"dataset {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"dataset {path} is not readable ({exc.strerror})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise InputError(f"dataset {path} grew beyond the limit of {MAX_JSON_BYTES // 2**20} MiB while it was read")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"dataset {path} is not readable JSON ({str(exc)[:200]})") from None


def _sections(path: Path, data) -> tuple[list, list, list]:
    """The lists ``images``, ``annotations`` (empty if absent) and ``categories``, their counts bounded."""
    expected = "expected an object with images, annotations (bbox [x, y, w, h]) and categories"
    if not isinstance(data, dict):
        raise InputError(f"dataset {path} is not COCO-style: its top level is {_kind(data)}, {expected}")
    for key in ("images", "categories"):
        if key not in data:
            raise InputError(f"dataset {path} is not COCO-style: missing or malformed {key!r} ({expected})")
    limits = {"images": MAX_IMAGES, "annotations": MAX_ANNOTATIONS, "categories": MAX_CATEGORIES}
    sections = []
    for key, limit in limits.items():
        value = data.get(key, [])
        if not isinstance(value, list):
            raise InputError(f"dataset {path} is not COCO-style: missing or malformed {key!r}: {_kind(value)}, expected a list")
        if len(value) > limit:
            raise InputError(f"dataset {path} has {len(value):,} {key}, more than the limit of {limit:,}; split the dataset")
        sections.append(value)
    return sections[0], sections[1], sections[2]


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_categories(categories: list, problems: list[str]) -> dict[int, int]:
    """``{category id: 0-based label}`` in the order of the ids; problems for bad entries."""
    names: set[str] = set()
    ids: set[int] = set()
    if not categories:
        problems.append("no categories, expected at least one {id, name}")
    for i, cat in enumerate(categories):
        where = f"category #{i}" + (f" (id {cat.get('id')!r})" if isinstance(cat, dict) else "")
        if not isinstance(cat, dict):
            problems.append(f"{where} is {_kind(cat)}, expected an object {{id, name}}")
        elif not _is_int(cat.get("id")):
            problems.append(f"{where}: id is {_kind(cat.get('id'))}, expected an integer")
        elif not isinstance(cat.get("name"), str) or not cat["name"]:
            problems.append(f"{where}: name is {cat.get('name')!r}, expected a non-empty string")
        elif cat["id"] in ids or cat["name"] in names:
            problems.append(f"{where} ({cat['name']}) repeats an id or a name, expected each once")
        else:
            ids.add(cat["id"])
            names.add(cat["name"])
    return {c: i for i, c in enumerate(sorted(ids))}


def _check_images(images: list, problems: list[str]) -> tuple[dict[int, dict], set[int]]:
    """``{image id: image}`` of the good entries and the ids of the refused ones; problems for bad
    or repeated entries."""
    image_of: dict[int, dict] = {}
    names: dict[int, object] = {}  # the file name of every id seen
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            problems.append(f"image #{i} is {_kind(img)}, expected an object {{id, file_name, width, height}}")
            continue
        image_id, name = img.get("id"), img.get("file_name")
        where = f"image #{i} (id {image_id!r}, {name!r})"
        if not _is_int(image_id):
            problems.append(f"{where}: id is {_kind(image_id)}, expected an integer")
            continue
        if image_id in names:
            problems.append(f"{where}: id {image_id} is also the id of image {names[image_id]!r}, expected unique ids")
            continue
        names[image_id] = name
        if not isinstance(name, str) or not name or "\0" in name:
            problems.append(f"{where}: file_name is {_kind(name)}, expected a non-empty path relative to the JSON's folder")
        elif not all(_side(img.get(key)) for key in ("width", "height")):
            problems.append(
                f"{where}: width {img.get('width')!r} and height {img.get('height')!r}, expected integers 1..{MAX_SIDE}"
            )
        else:
            image_of[image_id] = img
    return image_of, set(names) - set(image_of)


def _side(value) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer() and 1 <= value <= MAX_SIDE


def _check_annotations(
    annotations: list, image_of: dict[int, dict], refused: set[int], label_of: dict[int, int], problems: list[str]
) -> list[tuple[int, list[float], int]]:
    """(image id, box [x1, y1, x2, y2], label) of each good non-crowd annotation; problems for bad
    ones (those of a ``refused`` image are not checked: its own problem is reported)."""
    kept = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            problems.append(f"annotation #{i} is {_kind(ann)}, expected an object {{image_id, category_id, bbox}}")
            continue
        image_id = ann.get("image_id")
        if _is_int(image_id) and image_id in refused:
            continue
        img = image_of.get(image_id) if _is_int(image_id) else None
        where = f"annotation #{i} (id {ann.get('id')!r})" + (
            f" of image {image_id} ({img['file_name']})" if img else f" of image id {image_id!r}"
        )
        message = _annotation_problem(ann, img, label_of)
        if message:
            problems.append(f"{where}: {message}")
        elif not ann.get("iscrowd", 0):
            x, y, w, h = (float(v) for v in ann["bbox"])
            kept.append((image_id, [x, y, x + w, y + h], label_of[ann["category_id"]]))
    return kept


def _annotation_problem(ann: dict, img: dict | None, label_of: dict[int, int]) -> str | None:
    """What is wrong with one annotation, or None."""
    if img is None:
        return f"image_id {ann.get('image_id')!r} is unknown, expected the id of an entry of images"
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in label_of:
        return f"category_id {ann.get('category_id')!r} is unknown, expected one of the ids of categories"
    if ann.get("iscrowd", 0) not in (0, 1):  # True and False compare equal to 1 and 0
        return f"iscrowd {ann.get('iscrowd')!r}, expected 0 or 1"
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox {bbox!r}, expected 4 numbers [x, y, width, height]"
    if not all(math.isfinite(v) for v in bbox):
        return f"bbox {bbox!r} is not finite, expected 4 finite numbers"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return f"bbox {bbox!r} has width {w:g} and height {h:g}, expected both positive"
    width, height = img["width"], img["height"]
    if x < -BOX_SLACK or y < -BOX_SLACK or x + w > width + BOX_SLACK or y + h > height + BOX_SLACK:
        return (
            f"bbox {bbox!r} spans x {x:g}..{x + w:g}, y {y:g}..{y + h:g}, expected inside the image's "
            f"{width}x{height} pixels (within {BOX_SLACK:g} pixel)"
        )
    return None


def check_images(records: Sequence[Record], max_pixels: int | None = None) -> None:
    """Refuse, naming the first few, records whose image is missing, cannot be opened, is larger
    than ``max_pixels`` or has another size than its record gives (after its EXIF orientation,
    as it is loaded). Reads headers only (Pillow, extra ``images``)."""
    from overfeat.runtime.image import DEFAULT_MAX_PIXELS

    try:
        from PIL import Image
    except ModuleNotFoundError:
        raise InputError("reading image files needs Pillow: pip install 'overfeat[images]'") from None
    limit = max_pixels or DEFAULT_MAX_PIXELS
    problems = []
    for record in records:
        message = _image_problem(Image, record, limit)
        if message:
            problems.append(f"{record.path}: {message}")
    _refuse(
        f"{len(problems)} of the {len(records):,} images of the dataset do not match their records",
        problems,
        "fix the images or their records in the JSON",
    )


def _image_problem(Image, record: Record, limit: int) -> str | None:
    try:
        with Image.open(record.path) as img:
            w, h = img.size
            # EXIF orientation, as loading applies it; a PNG's getexif would decode the pixels
            # unless the EXIF came before them, so a PNG's later EXIF goes unseen here
            exif = img.getexif() if img.format != "PNG" or "exif" in img.info else {}
    except FileNotFoundError:
        return "missing"
    except IsADirectoryError:
        return "a directory, expected an image file"
    except Image.UnidentifiedImageError:
        return "not an image file Pillow can read"
    except Image.DecompressionBombError:
        return "larger than Pillow's decompression-bomb limit"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"cannot be opened ({str(exc)[:120]})"
    turned = exif.get(0x0112, 1) in (5, 6, 7, 8)  # 0x0112: Orientation; 5..8 swap width and height
    if turned:
        w, h = h, w
    if (w, h) != (record.width, record.height):
        return f"is {w}x{h} (width x height{', after its EXIF orientation' if turned else ''}), its record says {record.width}x{record.height}"
    if w * h > limit:
        return f"is {w}x{h} = {w * h:,} pixels, more than the limit of {limit:,}"
    return None
