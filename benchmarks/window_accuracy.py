"""Window accuracy of a trained shapes checkpoint on its training images and on test images.

    python benchmarks/window_accuracy.py [--checkpoint models/shapes-accurate-w12.safetensors]
        [--images 300] [--batches 8] [--seed 77] [--centred 500]

Draws classifier crops the way training does (:class:`overfeat.training.train.CropSampler`, object
and background crops, random symmetries; one window per crop) from the first ``--images`` single-object
images of the train split (seed 0, the images training saw) and of the test split (``--seed``),
runs the model on them in eval mode (batch norm folded, coarse stride: one output per window)
and prints the share of object windows whose top class is right, for the ``cls`` and ``det``
heads. A large gap between the two splits means the model overfits its training images. A second
table gives the ``det`` head's accuracy on the test windows of each class, with the class it
most often takes them for.

A third table takes training's mix out of the figure: each test object alone in one window,
whole and centred, at a size (its box's longer side) of a given share of the window. An image
whose region of that size around its object does not fit inside it gives no window there (no
padding), so small shares count fewer windows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from overfeat.datasets.shapes import generate  # noqa: E402
from overfeat.export.torch_backend import TorchBackend  # noqa: E402
from overfeat.training.train import CropSampler  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"
SHARES = (0.15, 0.25, 0.4, 0.6, 0.8, 1.0)  # object's longer side / window side


def window_accuracy(model, seed: int, split: str, images: int, batches: int) -> dict[str, np.ndarray]:
    """Per head (``scores``, ``det_scores``), a confusion matrix of object windows holding one
    object: rows the true class, columns the head's top class."""
    pool = [(s.image, s.boxes, s.labels) for s in (generate(seed, "single", split, i) for i in range(images))]
    sampler = CropSampler(pool, model, 1, np.random.default_rng(1))
    windows = sampler.batches("classifier", 64)
    classes = model.num_classes
    counts = {"scores": np.zeros((classes, classes), np.int64), "det_scores": np.zeros((classes, classes + 1), np.int64)}
    with torch.no_grad():
        for _ in range(batches):
            x, t = next(windows)
            out = model(x)
            positive = (t.label >= 0) & (t.box_mask.sum(axis=1) <= 1)
            for key, matrix in counts.items():
                np.add.at(matrix, (t.label[positive], out[key].flatten(1).argmax(1).numpy()[positive]), 1)
    return counts


def centred_region(box, share: float, image_size: tuple[int, int]) -> tuple[int, int, int] | None:
    """(left, top, side) of the square region centred on ``box`` (x1, y1, x2, y2) whose side is
    the box's longer side / ``share``; None where it does not fit inside an image of ``image_size``
    (height, width)."""
    x1, y1, x2, y2 = box
    side = round(max(x2 - x1, y2 - y1) / share)
    left, top = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    h, w = image_size
    if left < 0 or top < 0 or left + side > w or top + side > h:
        return None
    return left, top, side


def centred_accuracy(model, seed: int, images: int, shares: tuple[float, ...]) -> list[tuple[float, int, float, float]]:
    """(share, windows, cls right, det right) for each share of the window a centred object takes."""
    import torch.nn.functional as F

    meta = model.metadata()
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (meta.mean, meta.std))
    samples = [generate(seed, "single", "test", i) for i in range(images)]
    rows = []
    for share in shares:
        crops, labels = [], []
        for s in samples:
            region = centred_region(s.boxes[0], share, s.image.shape[:2])
            if region is None:
                continue
            left, top, side = region
            pixels = (
                torch.from_numpy(np.ascontiguousarray(s.image[top : top + side, left : left + side]))
                .permute(2, 0, 1)[None]
                .float()
            )
            crops.append(
                F.interpolate(pixels, size=(meta.window, meta.window), mode="bilinear", antialias=True, align_corners=False)
            )
            labels.append(int(s.labels[0]))
        if not crops:
            rows.append((share, 0, float("nan"), float("nan")))
            continue
        with torch.no_grad():
            out = model((torch.cat(crops) - mean) / std)
        right = {
            key: float(np.mean(out[key].flatten(1).argmax(1).numpy() == np.asarray(labels))) for key in ("scores", "det_scores")
        }
        rows.append((share, len(labels), right["scores"], right["det_scores"]))
    return rows


def accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix[:, : len(matrix)]) / max(matrix.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(CHECKPOINT))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=77, help="seed of the test images (training used seed 0)")
    parser.add_argument("--centred", type=int, default=500, help="test images for the table of centred objects (default 500)")
    args = parser.parse_args()
    for name in ("images", "batches", "centred"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: expected at least 1")
    backend = TorchBackend(args.checkpoint, fine_stride=False)
    model = backend.model.eval()
    print("| images | cls head | det head |\n|---|---|---|")
    for label, seed, split in (
        ("train split, seed 0 (seen in training)", 0, "train"),
        (f"test split, seed {args.seed}", args.seed, "test"),
    ):
        counts = window_accuracy(model, seed, split, args.images, args.batches)
        print(f"| {label} | {100 * accuracy(counts['scores']):.1f}% | {100 * accuracy(counts['det_scores']):.1f}% |")
    names = list(backend.meta.classes) + ["background"]
    print(f"\n`det` head on the test windows of each class (seed {args.seed}):\n")
    print("| class | windows | right | most often taken for |\n|---|---:|---:|---|")
    for c, row in enumerate(counts["det_scores"]):
        wrong = row.copy()
        wrong[c] = 0
        other = f"{names[int(wrong.argmax())]} ({100 * wrong.max() / max(row.sum(), 1):.1f}%)" if wrong.any() else "-"
        print(f"| {names[c]} | {row.sum()} | {100 * row[c] / max(row.sum(), 1):.1f}% | {other} |")
    print(
        f"\nEach object whole and centred in one window (the first {args.centred} single-object test images, seed {args.seed}):\n"
    )
    print("| object / window | windows | cls head | det head |\n|---:|---:|---:|---:|")
    for share, n, cls_right, det_right in centred_accuracy(model, args.seed, args.centred, SHARES):
        print(f"| {share:.2f} | {n} | {100 * cls_right:.1f}% | {100 * det_right:.1f}% |")


if __name__ == "__main__":
    main()
