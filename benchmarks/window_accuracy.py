"""Window accuracy of a trained shapes checkpoint on its training images and on test images.

    python benchmarks/window_accuracy.py [--checkpoint models/shapes-accurate-w12.safetensors]
        [--images 300] [--batches 8] [--seed 77]

Draws classifier crops the way training does (:class:`overfeat.export.train.CropSampler`, object
and background crops, random symmetries; one window per crop) from the first ``--images`` single-object
images of the train split (seed 0, the images training saw) and of the test split (``--seed``),
runs the model on them in eval mode (batch norm folded, coarse stride: one output per window)
and prints the share of object windows whose top class is right, for the ``cls`` and ``det``
heads. A large gap between the two splits means the model overfits its training images. A second
table gives the ``det`` head's accuracy on the test windows of each class, with the class it
most often takes them for.
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
from overfeat.export.train import CropSampler  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "shapes-accurate-w12.safetensors"


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


def accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix[:, : len(matrix)]) / max(matrix.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(CHECKPOINT))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=77, help="seed of the test images (training used seed 0)")
    args = parser.parse_args()
    backend = TorchBackend(args.checkpoint, fine_stride=False)
    model = backend.model.eval()
    print("| images | cls head | det head |\n|---|---|---|")
    for label, seed, split in (("train split, seed 0 (seen in training)", 0, "train"), (f"test split, seed {args.seed}", args.seed, "test")):
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


if __name__ == "__main__":
    main()
