"""The class vote of ``benchmarks/decoding.py`` (the one decoding there that is not the
runtime's) against spelt-out answers: its figure is quoted in docs/accuracy.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "decoding.py"
_spec = importlib.util.spec_from_file_location("decoding_benchmark", _PATH)
decoding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decoding)


def test_class_vote_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], dtype=np.float64)
    scores = np.array([0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 2, 2, 1, 1])
    voted = decoding.class_vote(None, boxes, scores, labels)
    # one cluster of the four boxes near the origin (IoU with the first > 0.5): class 2 sums
    # 0.9 against class 1's 0.8; the far box alone
    assert sorted(zip(voted.labels.tolist(), np.round(voted.scores, 9).tolist(), strict=True)) == [(1, 0.3), (2, 0.9)]
    assert np.allclose(voted.boxes[voted.labels == 2][0], (0.5 * boxes[1] + 0.4 * boxes[2]) / 0.9)
    assert np.allclose(voted.boxes[voted.labels == 1][0], boxes[3])


def test_class_vote_edges():
    # IoU exactly 0.5 does not join a cluster (the runtime's NMS rule); a box without area is its own
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [5, 5, 5, 9]], dtype=np.float64)
    found = decoding.class_vote(None, boxes, np.array([0.9, 0.8, 0.95]), np.array([0, 1, 0]))
    assert sorted(found.scores.tolist()) == [0.8, 0.9, 0.95] and np.isfinite(found.boxes).all()
