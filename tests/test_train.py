"""Training: window targets against a one-at-a-time reference, batch-norm folding, a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import needs_export
from tests.reference import window_targets_reference

pytestmark = needs_export


def _random_scene(rng):
    k = int(rng.integers(0, 6))
    xy = rng.uniform(-50, 400, (k, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 300, (k, 2))], axis=1)
    labels = rng.integers(0, 4, k)
    if k > 1 and rng.random() < 0.3:  # an exact duplicate: equal IoUs, the first object wins
        boxes[1], labels[1] = boxes[0], labels[0]
    origins = np.stack(np.meshgrid(np.arange(0, 300, 37), np.arange(0, 250, 41)), axis=-1).reshape(-1, 2)
    return boxes, labels, origins


@pytest.mark.parametrize("seed", range(30))
def test_window_targets_equal_the_reference(seed):
    from overfeat.training.train import BACKGROUND, IGNORE, window_targets

    boxes, labels, origins = _random_scene(np.random.default_rng(seed))
    t = window_targets(boxes, labels, origins, 221, 4)
    for n, (label, per_class) in enumerate(window_targets_reference(boxes, labels, origins, 221, 4)):
        expected = {None: IGNORE, "bg": BACKGROUND}.get(label, label)
        assert t.label[n] == expected
        assert set(np.flatnonzero(t.box_mask[n])) == set(per_class)
        for c, box in per_class.items():
            np.testing.assert_allclose(t.boxes[n, c], box, rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_symmetries_move_the_boxes_with_the_pixels(seed):
    """Each of the eight symmetries and any channel order: the painted rectangle of each box
    ends up exactly where the moved box says, in the channel it was painted in."""
    import itertools

    import torch

    from overfeat.training.train import Symmetry

    rng = np.random.default_rng(seed)
    S = int(rng.integers(20, 60))
    boxes = []
    image = np.zeros((S, S, 3), np.uint8)
    for ch in range(3):  # one box per channel, so that each can be found again alone
        x1, y1 = (int(v) for v in rng.integers(0, S - 2, 2))
        x2, y2 = int(rng.integers(x1 + 1, S + 1)), int(rng.integers(y1 + 1, S + 1))
        image[y1:y2, x1:x2, ch] = 255
        boxes.append([x1, y1, x2, y2])
    window = torch.from_numpy(image).permute(2, 0, 1)[None]
    for flags in itertools.product((False, True), repeat=3):
        symmetry = Symmetry(*flags, tuple(int(c) for c in rng.permutation(3)))
        out, moved = symmetry.pixels(window), symmetry.boxes(np.asarray(boxes, float), S)
        assert out.shape == window.shape
        for k in range(3):
            ys, xs = np.nonzero(out[0, symmetry.channels.index(k)].numpy())
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == moved[k].tolist(), symmetry
    assert Symmetry(True, True, True).boxes(np.zeros((0, 4)), S).shape == (0, 4)
    drawn = {Symmetry.random(rng) for _ in range(400)}
    assert len({(d.hflip, d.vflip, d.transpose) for d in drawn}) == 8 and len({d.channels for d in drawn}) == 6


def test_batchnorm_folds_into_the_convolutions():
    import torch

    from overfeat.export import build_model
    from overfeat.training.train import fold_batchnorm, with_batchnorm

    model = build_model("accurate", 3, ("cls",), 1 / 16, fine_stride=False, seed=0)
    trunk, pairs = with_batchnorm(model.features, plain_last=False)
    head, head_pairs = with_batchnorm(model.classifier, plain_last=True)
    assert len(head_pairs) == 2  # the output layer has no norm
    trunk.train(), head.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their initial values
            head(trunk(torch.randn(4, 3, 221, 221) * 2 + 0.5))
        for norm in (n for _, n in pairs + head_pairs):
            norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.2, 0.2)
        trunk.eval(), head.eval()
        x = torch.randn(2, 3, 245, 257)
        expected = head(trunk(x))
        fold_batchnorm(pairs + head_pairs)
        folded = model.classifier(model.features(x))
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("paper_trunk", [False, True])
def test_a_tiny_training_run_writes_a_loadable_checkpoint(tmp_path, paper_trunk):
    import torch
    from safetensors import safe_open

    from overfeat.export import build_model, load_checkpoint
    from overfeat.training.train import TrainConfig, save_checkpoint, train_shapes

    config = TrainConfig(width=1 / 16, single=6, multi=4, steps=(3, 2, 2), batch=3, workers=1, paper_trunk=paper_trunk)
    model, log = train_shapes(config)
    assert set(log["stages"]) == {"classifier", "regressor", "detector"}
    assert model.fine_stride and not model.training
    assert all(p.is_contiguous() for p in model.parameters())  # trained channels-last, handed back plain
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path, config, log)
    with safe_open(str(path), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        assert '"width": 0.0625' in f.metadata()["overfeat.model"]
        assert json.loads(f.metadata()["overfeat.train_config"])["paper_trunk"] is paper_trunk
    fresh = load_checkpoint(build_model("accurate", 10, ("cls", "loc", "det"), 1 / 16), path)
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(fresh.state_dict()[key].numpy(), value.half().float().numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]  # no temporary left


def test_train_config_rejects_bad_values():
    from overfeat.errors import InputError
    from overfeat.training.train import TrainConfig

    for bad in (
        {"width": 0},
        {"single": 0},
        {"steps": (1, 0, 1)},
        {"steps": (1, 1)},
        {"batch": 0},
        {"grid": 0},
        {"lr": 0},
        {"lr": float("nan")},
    ):
        with pytest.raises(InputError):
            TrainConfig(**bad)


@pytest.mark.parametrize("seed", range(3))
def test_crops_show_the_boxes_their_targets_give(seed):
    """Every window's box target, decoded back into the crop, frames the object's pixels there.

    One grey rectangle per image on black, images small and large (so the crop's scale is
    sometimes raised to fit), every stage's mix, random symmetries and channel orders."""
    import torch

    from overfeat.export import build_model
    from overfeat.training.train import STAGES, CropSampler, _flat

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(240, 600, 2))
        x1, y1 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x2, y2 = int(rng.integers(x1 + 40, min(w, x1 + 300) + 1)), int(rng.integers(y1 + 40, min(h, y1 + 300) + 1))
        image = np.zeros((h, w, 3), np.uint8)
        image[y1:y2, x1:x2] = 200
        pool.append((image, np.array([[x1, y1, x2, y2]], float), np.array([int(rng.integers(0, 3))])))
    sampler = CropSampler(pool, build_model("accurate", 3, ("cls",), 1 / 16, fine_stride=False), 5, rng)
    C, S = sampler.side, sampler.window
    assert C == 365 and len(sampler.origins) == 25
    checked = 0
    for stage in STAGES:
        for _ in range(20):
            crop, t = sampler.sample(stage)
            pixels = crop[0, 0].numpy().astype(float)
            assert crop.shape == (1, 3, C, C)
            for k in np.flatnonzero(t.box_mask.any(axis=1)):
                (c,) = np.flatnonzero(t.box_mask[k])
                x1, y1, x2, y2 = t.boxes[k, c] * S + np.tile(sampler.origins[k], 2)
                assert t.label[k] == c
                inner = pixels[max(0, int(y1) + 3) : int(y2) - 3, max(0, int(x1) + 3) : int(x2) - 3]
                if inner.size:
                    assert inner.min() > 190, (stage, k)
                outside = np.ones_like(pixels, bool)
                outside[max(0, int(y1) - 3) : int(y2) + 4, max(0, int(x1) - 3) : int(x2) + 4] = False
                assert pixels[outside].max(initial=0) < 10, (stage, k)
                checked += 1
    assert checked > 300
    grid = torch.arange(2 * 25, dtype=torch.float32).view(2, 1, 5, 5)  # map value = crop·25 + i·5 + j
    assert _flat(grid)[:, 0].tolist() == list(range(50))  # rows follow sampler.origins per crop
    assert sampler.origins[7].tolist() == [2 * 36, 1 * 36]  # row 7: i = 1, j = 2


def test_batches_are_the_normalised_crops_in_order():
    """A batch is its crops, normalised with the model's mean and std, stacked in the order drawn
    in the plain layout (the first layer's fast one), and the crops' targets in order."""
    import torch

    from overfeat.export import build_model
    from overfeat.training.train import CropSampler

    rng = np.random.default_rng(0)
    pool = [
        (rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8), np.array([[20.0, 30, 150, 170]]), np.array([1]))
        for h, w in rng.integers(240, 500, (4, 2))
    ]
    model = build_model("accurate", 3, ("cls",), 1 / 16, fine_stride=False)
    x, t = next(CropSampler(pool, model, 3, np.random.default_rng(5)).batches("classifier", 4))
    one = CropSampler(pool, model, 3, np.random.default_rng(5))
    crops, rows = zip(*(one.sample("classifier") for _ in range(4)), strict=True)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.metadata().mean, model.metadata().std))
    assert x.shape == (4, 3, 293, 293) and x.dtype == torch.float32
    assert x.is_contiguous()
    torch.testing.assert_close(x, (torch.cat(crops).float() - mean) / std, rtol=0, atol=0)  # the same arithmetic
    np.testing.assert_array_equal(t.label, np.concatenate([r.label for r in rows]))
    np.testing.assert_array_equal(t.boxes, np.concatenate([r.boxes for r in rows]))


def _rates(schedule_for, steps: int) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under ``schedule_for(optimizer)``."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    schedule = schedule_for(optimizer)
    rates = []
    for step in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step < steps - 1:  # the rate after the last step is never used
            schedule.step()
    return rates


def test_every_stage_length_has_a_schedule():
    """A stage of any length trains (OneCycleLR's own 5% warm-up divides by zero at 20 steps);
    long stages keep exactly the 5% schedule the committed model was trained with."""
    import torch

    from overfeat.training.train import one_cycle

    with pytest.raises(ZeroDivisionError):  # the failure one_cycle avoids
        torch.optim.lr_scheduler.OneCycleLR(
            torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), max_lr=3e-3, total_steps=20, pct_start=0.05
        )
    for steps in range(1, 120):
        rates = _rates(lambda o, n=steps: one_cycle(o, 3e-3, n), steps)
        assert len(rates) == steps and all(np.isfinite(rates)) and max(rates) <= 3e-3 * (1 + 1e-9)
        if 3 <= steps < 40:  # one step of warm-up: the peak at the second step, then annealing
            assert rates[0] < rates[1] == pytest.approx(3e-3)
            assert np.all(np.diff(rates[1:]) <= 0) and rates[-1] < rates[1]
        if steps >= 40:
            plain = _rates(
                lambda o, n=steps: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=3e-3, total_steps=n, pct_start=0.05), steps
            )
            assert rates == plain
