"""Train a reduced-width OverFeat on the shapes dataset, the paper's way (extra ``export``).

Every step sees square crops whose coarse output map is ``grid``×``grid`` (5×5 by default):
each output location is one 221×221 window (the network's field of view) at the network's
stride, computed in one forward pass that shares the convolutions of overlapping windows, as
inference does. That is the paper's efficiency argument turned to training: a step of 16 crops
of 365×365 trains 400 windows for about the cost of 64 separate ones. A crop is a region of an
original image resized to the crop's side, i.e. what one pyramid scale shows
(:class:`CropSampler`). The targets of each window follow from its overlap with the boxes
(:func:`window_targets`). Three stages:

1. **classifier**: trunk and ``cls`` head, cross-entropy. A window is labelled with the class
   of the object it holds at least half of; windows holding at least half of objects of two
   classes are left out of this head's loss (a softmax has no single right answer there), while
   for the ``det`` head the one with the highest IoU wins. Windows holding less than
   ``BACKGROUND_FRAC`` of every object are trained towards the uniform distribution, so that
   away from objects the classifier is undecided (its probabilities are the localizer's box
   confidences); windows in between are not used. In the same steps the ``det`` head (C
   classes + background) and the ``loc`` head train too, so the trunk also learns crowds,
   background and where objects end. The paper's trunk learns classification alone
   (``paper_trunk=True`` does that); at this width and budget the boxes read from such a trunk
   are too coarse (``models/README.md`` has the side-by-side figures).
2. **regressor**: layers 1–5 (the trunk) frozen, ``loc`` head with the L2 loss on the encoded
   box ((x1 − x0)/S, (y1 − y0)/S, (x2 − x0)/S, (y2 − y0)/S) of each class's object in windows
   that hold at least half of it (``POSITIVE_FRAC``), objects 10–120% of the window.
3. **detector**: trunk frozen, ``det`` head again, positive and background windows weighted
   equally.

Batch norm after each hidden convolution speeds up training from scratch; it is folded into the
convolutions at the end (:func:`fold_batchnorm`), so the model keeps the paper's topology.
Images come from the train split (single- and multi-object kinds), generated once into memory
by worker processes. Randomness is seeded; the result is deterministic up to floating-point
reduction order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from overfeat.datasets.shapes import CLASSES, generate
from overfeat.errors import InputError
from overfeat.export.model import OverFeat, build_model
from overfeat.fileio import atomic_path, check_output_path
from overfeat.progress import Progress

POSITIVE_FRAC = 0.5  # a window holding ≥ this fraction of an object's box is a positive for it
BACKGROUND_FRAC = 0.2  # a window holding < this fraction of every object is background
CENTRING = 0.05  # weight of the classifier's mean-logit penalty
IGNORE, BACKGROUND = -1, -2
STAGES = ("classifier", "regressor", "detector")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in the checkpoint's metadata)."""

    width: float = 1 / 12
    seed: int = 0
    single: int = 3000  # training images with one object
    multi: int = 3000  # training images with 0-6 objects
    steps: tuple[int, int, int] = (4000, 1500, 800)  # per stage
    batch: int = 16  # crops per step
    grid: int = 5  # each crop's output map is grid×grid windows
    lr: float = 3e-3  # peak of each stage's one-cycle schedule
    workers: int = 2
    paper_trunk: bool = False  # stage 1 trains the trunk for the cls and det heads only

    def __post_init__(self) -> None:
        if not (0 < self.width <= 1):
            raise InputError(f"width must be in (0, 1], got {self.width}")
        if self.single < 1 or self.multi < 0:
            raise InputError(
                f"need at least one single-object image and no negative counts, got single={self.single}, multi={self.multi}"
            )
        if len(self.steps) != 3 or min(self.steps) < 1:
            raise InputError(f"steps must be three positive numbers (classifier, regressor, detector), got {self.steps}")
        if not (0 < self.lr < 1):
            raise InputError(f"lr must be in (0, 1), got {self.lr}")
        if self.batch < 1 or self.grid < 1:
            raise InputError(
                f"batch (crops per step) and grid (windows per side of a crop's map) must be at least 1, got batch={self.batch}, grid={self.grid}"
            )
        self.check_memory()

    def check_memory(self) -> None:
        """Refuse a pool of images or a step whose crops would not fit the memory limit."""
        from overfeat.datasets.shapes import MAX_SIDE, MIN_SIDE
        from overfeat.geometry import ACCURATE
        from overfeat.limits import check_memory, forward_bytes

        pool = (self.single + self.multi) * ((MIN_SIDE + MAX_SIDE) // 2) ** 2 * 3  # the generated images, uint8, on average
        check_memory(pool, f"the training pool of {self.single + self.multi} images (`single`, `multi`)")
        side = ACCURATE.window + ACCURATE.stride(fine=False) * (self.grid - 1)
        # backward keeps every layer's activations: about as many peaks as the network has layers
        step = 6 * forward_bytes("accurate", (side, side), self.batch, self.width, fine=False)
        check_memory(pool + step, f"a training step of {self.batch} crops of {side}x{side} (`batch`, `grid`)")


@dataclass(frozen=True)
class Targets:
    """Per-window targets: label (class, BACKGROUND or IGNORE; both classification heads use it),
    boxes [N, C, 4] and their mask [N, C]."""

    label: np.ndarray
    boxes: np.ndarray
    box_mask: np.ndarray


def window_targets(boxes: np.ndarray, labels: np.ndarray, origins: np.ndarray, window: int, num_classes: int) -> Targets:
    """Targets of windows at ``origins`` [N, 2] (x0, y0) for objects ``boxes`` [K, 4], ``labels`` [K]."""
    n, S = len(origins), float(window)
    x0, y0 = origins[:, 0:1].astype(np.float64), origins[:, 1:2].astype(np.float64)
    b = boxes.astype(np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(x0 + S, b[None, :, 2]) - np.maximum(x0, b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(y0 + S, b[None, :, 3]) - np.maximum(y0, b[None, :, 1]), 0, None)
    inter = iw * ih  # [N, K]
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    frac = inter / area[None, :]
    iou = inter / (S * S + area[None, :] - inter)
    positive = frac >= POSITIVE_FRAC
    ranked = np.where(positive, iou, -1.0)
    label = np.full(n, IGNORE, dtype=np.int64)
    if len(b):
        best = ranked.argmax(axis=1)
        has = positive.any(axis=1)
        label[has] = labels[best[has]]
        label[~has & (frac.max(axis=1) < BACKGROUND_FRAC)] = BACKGROUND
    else:
        label[:] = BACKGROUND
    encoded = (b[None, :, :] - np.concatenate([x0, y0, x0, y0], axis=1)[:, None, :]) / S  # [N, K, 4]
    box_t = np.zeros((n, num_classes, 4), dtype=np.float32)
    box_m = np.zeros((n, num_classes), dtype=bool)
    for c in np.unique(labels):
        of_c = np.where(labels[None, :] == c, ranked, -1.0)
        best = of_c.argmax(axis=1)
        has = of_c.max(axis=1) >= 0
        box_t[has, c] = encoded[np.flatnonzero(has), best[has]]
        box_m[has, c] = True
    return Targets(label, box_t, box_m)


def _generate(args: tuple[int, str, int]):
    seed, kind, index = args
    s = generate(seed, kind, "train", index)
    return s.image, s.boxes, s.labels


def make_pool(config: TrainConfig, progress: Progress) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The training images, generated once (in ``workers`` processes)."""
    jobs = [(config.seed, "single", i) for i in range(config.single)] + [(config.seed, "multi", i) for i in range(config.multi)]
    if config.workers > 1:
        with ProcessPoolExecutor(config.workers) as pool:
            return list(progress.track(pool.map(_generate, jobs, chunksize=32), "training images", total=len(jobs)))
    return [_generate(job) for job in progress.track(jobs, "training images")]


class CropSampler:
    """Batches of normalised square crops, each seen by ``grid``×``grid`` windows, and their targets.

    A crop of side 221 + 36·(grid − 1) gives a grid×grid coarse map; window (i, j) starts at
    (36·j, 36·i) in the crop, and the targets come in the map's row-major order
    (:attr:`origins`). A crop is a region of an original image resized to the crop's side, so
    only the region's pixels are resampled:

    - an *object crop* picks an object, a size for it in window units (log-uniform in the
      stage's range) and a place for its centre in the crop, with a little aspect jitter;
    - a *random crop* picks a pyramid-like scale (the image's shorter side becomes 245–569
      pixels) and a random place.

    Where the image is too small for the crop at that scale, the scale is raised until the crop
    fits: no window sees padding or stretched pixels. The crop is then turned by one of the eight
    symmetries of the square and has its colour channels permuted (:class:`Symmetry`), which
    multiplies the distinct objects the small training pool shows.
    """

    # stage → (share of object crops, object size range in window units)
    MIX = {"classifier": (0.75, (0.2, 0.9)), "regressor": (1.0, (0.1, 1.2)), "detector": (0.5, (0.1, 1.2))}

    def __init__(self, pool, model: OverFeat, grid: int, rng: np.random.Generator) -> None:
        meta = model.metadata()
        if meta.fine_stride:
            raise ValueError("CropSampler needs the model's coarse map (set_fine_stride(False))")
        self.pool, self.rng, self.grid = pool, rng, grid
        self.window, self.stride, self.classes = meta.window, meta.stride, model.num_classes
        self.side = self.window + self.stride * (grid - 1)
        self.short_sides = (min(meta.pyramid[0]), min(meta.pyramid[-1]))
        self.mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1)
        j, i = np.meshgrid(np.arange(grid), np.arange(grid))
        self.origins = np.stack([j.ravel(), i.ravel()], axis=1) * self.stride  # (x0, y0), row-major

    def region(self, index: int, stage: str) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2) of the original image that becomes a crop."""
        image, boxes, _ = self.pool[index]
        h0, w0 = image.shape[:2]
        C, rng = self.side, self.rng
        share, sizes = self.MIX[stage]
        aspect = math.exp(rng.uniform(-0.1, 0.1))
        centred = len(boxes) > 0 and rng.random() < share
        if centred:
            b = boxes[rng.integers(len(boxes))]
            size = math.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1]))) * self.window
            f = size / max(b[2] - b[0], b[3] - b[1], 1.0)
        else:
            f = math.exp(rng.uniform(*(math.log(v) for v in self.short_sides))) / min(h0, w0)
        f = max(f, C / (w0 * aspect), C * aspect / h0)  # the crop inside the image
        rw, rh = min(w0, C / (f * aspect)), min(h0, C * aspect / f)  # min: rounding only
        if centred:
            x1 = (b[0] + b[2]) / 2 - rng.uniform(0.1, 0.9) * rw
            y1 = (b[1] + b[3]) / 2 - rng.uniform(0.1, 0.9) * rh
        else:
            x1, y1 = rng.uniform(0, w0 - rw), rng.uniform(0, h0 - rh)
        rw, rh = min(w0, max(8, round(rw))), min(h0, max(8, round(rh)))
        x1 = int(np.clip(round(x1), 0, w0 - rw))
        y1 = int(np.clip(round(y1), 0, h0 - rh))
        return x1, y1, x1 + rw, y1 + rh

    def sample(self, stage: str) -> tuple[torch.Tensor, Targets]:
        """One crop ([1, 3, side, side] uint8, turned) and the targets of its grid² windows."""
        C = self.side
        index = int(self.rng.integers(len(self.pool)))
        image, boxes, labels = self.pool[index]
        x1, y1, x2, y2 = self.region(index, stage)
        fx, fy = C / (x2 - x1), C / (y2 - y1)
        local = (boxes - np.array([x1, y1, x1, y1])) * np.array([fx, fy, fx, fy])
        symmetry = Symmetry.random(self.rng)
        targets = window_targets(symmetry.boxes(local, C), labels, self.origins, self.window, self.classes)
        crop = torch.from_numpy(image[y1:y2, x1:x2]).permute(2, 0, 1)[None]
        resized = F.interpolate(crop, size=(C, C), mode="bilinear", antialias=True, align_corners=False)
        return symmetry.pixels(resized), targets

    def batches(self, stage: str, n: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        """Endless batches of ``n`` normalised crops [n, 3, side, side] and their n·grid² targets."""
        mean, std = self.mean[0], self.std[0]
        while True:
            # each crop is converted and normalised into its place while it is still in the cache:
            # one pass over the batch rather than four
            x, rows = torch.empty((n, 3, self.side, self.side), dtype=torch.float32), []
            for i in range(n):
                crop, targets = self.sample(stage)
                x[i].copy_(crop[0]).sub_(mean).div_(std)
                rows.append(targets)
            yield x, Targets(*(np.concatenate([getattr(r, f) for r in rows]) for f in ("label", "boxes", "box_mask")))


@dataclass(frozen=True)
class Symmetry:
    """One of the eight symmetries of the square window and an order of the colour channels.

    Each keeps every shape class what it is: squares and diamonds, the only classes drawn within
    ±20° of upright, stay within it under mirrors and the transpose, and colours are uniform at
    random. :meth:`boxes` moves boxes in the window's frame (0..``window``); :meth:`pixels`
    turns the window's pixels [N, 3, S, S] the same way.
    """

    hflip: bool
    vflip: bool
    transpose: bool
    channels: tuple[int, int, int] = (0, 1, 2)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Symmetry:
        h, v, t = (bool(f) for f in rng.random(3) < 0.5)
        return cls(h, v, t, tuple(int(c) for c in rng.permutation(3)))

    def boxes(self, boxes: np.ndarray, window: int) -> np.ndarray:
        S, b = float(window), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.hflip:
            b = np.stack([S - b[:, 2], b[:, 1], S - b[:, 0], b[:, 3]], axis=1)
        if self.vflip:
            b = np.stack([b[:, 0], S - b[:, 3], b[:, 2], S - b[:, 1]], axis=1)
        return b[:, [1, 0, 3, 2]] if self.transpose else b

    def pixels(self, window: torch.Tensor) -> torch.Tensor:
        if self.hflip:
            window = window.flip(-1)
        if self.vflip:
            window = window.flip(-2)
        if self.transpose:
            window = window.transpose(-1, -2)
        return window[:, list(self.channels)]


def _classifier_loss(logits: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, float]:
    labels_t = torch.from_numpy(labels)
    pos = labels_t >= 0
    log_p = F.log_softmax(logits, dim=1)
    loss = logits.new_zeros(())
    if pos.any():
        loss = loss + F.nll_loss(log_p[pos], labels_t[pos], reduction="sum")
    bg = labels_t == BACKGROUND
    if bg.any():  # cross-entropy against the uniform distribution
        loss = loss - log_p[bg].mean(dim=1).sum()
    correct = float((logits[pos].argmax(1) == labels_t[pos]).float().mean()) if pos.any() else float("nan")
    # softmax ignores a shift of all logits, but the runtime takes each class's spatial maximum
    # of the raw scores: keep every window's mean logit near 0, so that undecided (background)
    # windows score near 0 rather than at an arbitrary level
    centring = CENTRING * logits[pos | bg].mean(dim=1).square().sum()
    return (loss + centring) / max(1, int((pos | bg).sum())), correct


def _regressor_loss(boxes: torch.Tensor, target: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, float]:
    pred = boxes.view(len(boxes), -1, 4)
    m = torch.from_numpy(mask)
    diff = pred[m] - torch.from_numpy(target)[m]
    loss = diff.square().sum(dim=1).mean()
    return loss, float(diff.detach().abs().mean())


def _detector_loss(logits: torch.Tensor, labels: np.ndarray, background: int) -> tuple[torch.Tensor, float]:
    """Cross-entropy over C classes + background; object and background windows weigh equally."""
    labels_t = torch.from_numpy(np.where(labels == BACKGROUND, background, labels))
    keep = labels_t >= 0
    ce = F.cross_entropy(logits, labels_t.clamp(min=0), reduction="none")
    loss = logits.new_zeros(())
    for part in (keep & (labels_t != background), labels_t == background):
        if part.any():
            loss = loss + ce[part].mean() / 2
    right = float((logits[keep].argmax(1) == labels_t[keep]).float().mean()) if keep.any() else float("nan")
    return loss, right


def _flat(out: torch.Tensor) -> torch.Tensor:
    """[B, ch, h, w] → [B·h·w, ch], rows in the order of :attr:`CropSampler.origins` per crop."""
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])


def with_batchnorm(seq: nn.Sequential, plain_last: bool) -> tuple[nn.Sequential, list[tuple[nn.Conv2d, nn.BatchNorm2d]]]:
    """A training copy of ``seq`` sharing its convolutions, with batch norm after each one.

    ``plain_last`` leaves the last convolution (a head's output layer) without. After training,
    :func:`fold_batchnorm` moves each norm into its convolution, so the model keeps the paper's
    topology (batch norm only speeds up training from scratch of the small network).
    """
    layers: list[nn.Module] = []
    pairs = []
    convs = [m for m in seq if isinstance(m, nn.Conv2d)]
    for module in seq:
        layers.append(module)
        if isinstance(module, nn.Conv2d) and not (plain_last and module is convs[-1]):
            norm = nn.BatchNorm2d(module.out_channels)
            layers.append(norm)
            pairs.append((module, norm))
    return nn.Sequential(*layers), pairs


@torch.no_grad()
def fold_batchnorm(pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]]) -> None:
    """Fold each (eval-mode) batch norm into the convolution before it, in place."""
    for conv, norm in pairs:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """Each stage's schedule: a one-cycle warm-up over 5% of its ``steps`` to ``lr``, then cosine
    annealing.

    OneCycleLR ends its warm-up at step 0.05·steps − 1 and divides by the warm-up's length, so a
    stage of exactly 20 steps (a warm-up of length 0) would fail. A stage of 3–39 steps warms
    up over one step instead (its peak at its second step); stages of 40 steps or more, and of 1
    or 2 (no warm-up), keep the 5% schedule exactly.
    """
    share = max(0.05, 2 / steps) if 3 <= steps < 40 else 0.05
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=share)


def train_shapes(config: TrainConfig, progress: Progress | None = None) -> tuple[OverFeat, dict]:
    """Train the three stages; returns the model (eval mode) and a log of per-stage figures."""
    progress = progress or Progress(enabled=False)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    pool = make_pool(config, progress)
    log: dict = {"images": len(pool), "generate_seconds": round(time.perf_counter() - start, 1), "stages": {}}
    model = build_model("accurate", len(CLASSES), ("cls", "loc", "det"), config.width, fine_stride=False, seed=config.seed)
    sampler = CropSampler(pool, model, config.grid, rng)
    parts = _Parts.of(model)
    # stage 1 trains the trunk with the cls and det heads (and, unless paper_trunk, the loc head)
    joint = ("classifier", "detector") if config.paper_trunk else STAGES
    for stage, steps in zip(STAGES, config.steps, strict=True):
        training = joint if stage == "classifier" else (stage,)
        log["stages"][stage] = _train_stage(parts, stage, steps, training, sampler, config, progress)
    for module in (parts.trunk, *parts.heads.values()):
        module.eval()
    fold_batchnorm(parts.pairs)
    model.to(memory_format=torch.contiguous_format)
    log["seconds"] = round(time.perf_counter() - start, 1)
    model.requires_grad_(False)
    model.set_fine_stride(True)
    return model.eval(), log


@dataclass
class _Parts:
    """The model as it trains: the trunk and each head with batch norm inserted (``pairs``: the
    layers to fold them back into)."""

    trunk: nn.Sequential
    heads: dict[str, nn.Sequential]
    pairs: list
    num_classes: int

    @classmethod
    def of(cls, model: OverFeat) -> _Parts:
        trunk, pairs = with_batchnorm(model.features, plain_last=False)
        heads = {}
        for stage, module in zip(STAGES, (model.classifier, model.regressor, model.detector), strict=True):
            heads[stage], head_pairs = with_batchnorm(module, plain_last=True)
            pairs += head_pairs
        # Layer 1 (convolution, norm, ReLU, pooling) runs in the plain layout the crops come in;
        # batch norm over its few channels (8 at width 1/12) takes about half the time there that it
        # takes in channels-last (measured on its own, forward and backward). The layers after it
        # run channels-last, the layout the CPU's convolution kernels are fastest in (the second
        # convolution's weights turn its input).
        layer_1 = next(i for i, m in enumerate(trunk) if isinstance(m, nn.MaxPool2d)) + 1
        for module in (trunk[layer_1:], *heads.values()):
            module.to(memory_format=torch.channels_last)
        return cls(trunk, heads, pairs, model.num_classes)

    def losses(self, training: tuple[str, ...], features: torch.Tensor, t) -> dict:
        """Each trained head's (loss, metric) on a batch of targets ``t``."""
        losses = {}
        if "classifier" in training:  # windows holding half of objects of several classes left out
            labels = np.where(t.box_mask.sum(axis=1) > 1, IGNORE, t.label)
            losses["classifier"] = _classifier_loss(_flat(self.heads["classifier"](features)), labels)
        if "regressor" in training and t.box_mask.any():
            losses["regressor"] = _regressor_loss(_flat(self.heads["regressor"](features)), t.boxes, t.box_mask)
        if "detector" in training:
            losses["detector"] = _detector_loss(_flat(self.heads["detector"](features)), t.label, self.num_classes)
        return losses


def _train_stage(
    parts: _Parts,
    stage: str,
    steps: int,
    training: tuple[str, ...],
    sampler: CropSampler,
    config: TrainConfig,
    progress: Progress,
) -> dict:
    """One stage's steps; its log entry. Stage 1 (classifier) trains the trunk too; later stages
    keep it frozen, its norms on their running statistics."""
    stage_start = time.perf_counter()
    trains_trunk = stage == "classifier"
    trainable = [p for name in training for p in parts.heads[name].parameters()] + (
        list(parts.trunk.parameters()) if trains_trunk else []
    )
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=1e-4)
    schedule = one_cycle(optimizer, config.lr, steps)
    parts.trunk.train(trains_trunk)
    for name in STAGES:
        parts.heads[name].train(name in training)
    running: list[tuple[float, float]] = []
    batches = sampler.batches(stage, config.batch)
    for step in range(1, steps + 1):
        x, t = next(batches)
        with torch.set_grad_enabled(trains_trunk):
            features = parts.trunk(x)
        losses = parts.losses(training, features, t)
        if not losses:
            continue  # a regressor batch without an object: nothing to learn from
        loss = sum(value for value, _ in losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append((float(loss.detach()), losses[stage][1] if stage in losses else float("nan")))
        if step % 100 == 0 or step == steps:
            recent = np.nanmean(np.asarray(running[-100:]), axis=0)
            what = "mean |box error|" if stage == "regressor" else "window accuracy"
            progress.info(
                f"{stage} step {step}/{steps}: loss {recent[0]:.4f}, {what} {recent[1]:.3f} ({time.perf_counter() - stage_start:.0f} s)"
            )
    recent = np.nanmean(np.asarray(running[-200:]), axis=0)
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - stage_start, 1),
        "final_loss": round(float(recent[0]), 4),
        "final_metric": round(float(recent[1]), 4),
    }


def save_checkpoint(model: OverFeat, path: str | os.PathLike[str], config: TrainConfig, log: dict) -> None:
    """fp16 safetensors with the training configuration and log in its metadata; atomic."""
    from safetensors.torch import save_file

    check_output_path(path, "checkpoint")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    info = {
        "arch": "accurate",
        "width": config.width,
        "num_classes": model.num_classes,
        "heads": list(model.heads),
        "classes": list(CLASSES),
        "box_per_class": model.loc_per_class,
    }
    metadata = {
        "overfeat.model": json.dumps(info),
        "overfeat.train_config": json.dumps(asdict(config)),
        "overfeat.train_log": json.dumps(log),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
