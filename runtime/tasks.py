"""The runtime's three tasks, the heads each needs, and how dense maps are decoded into them.

- ``classify``: the top-k classes (heads ``cls``);
- ``localize``: the top-k classes and their merged boxes (``cls``, ``loc``);
- ``detect``: boxes of every class above a score (``det``, ``loc``), decoded by the greedy merge
  (``merge``, the paper's), NMS (``nms``) or NMS in which the suppressed boxes vote (``vote``).

:class:`DecodeConfig` holds every decoding option, validated once, and travels from the command
line through :class:`overfeat.runtime.Predictor`, :func:`overfeat.runtime.evaluate.evaluate`,
the precision gate and validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

from overfeat.errors import InputError, ModelError, positive_int

TASK_HEADS = {"classify": ("cls",), "localize": ("cls", "loc"), "detect": ("det", "loc")}
TASKS = tuple(TASK_HEADS)
METHODS = ("merge", "nms", "vote")  # detection decodings


@dataclass(frozen=True)
class DecodeConfig:
    """How dense maps become task results.

    top_k: classes considered (classify, localize); max_boxes: localize's boxes kept (None: top_k);
    min_score: localize's least per-location class probability of a box; score_threshold:
    detect's least per-location probability of a candidate; method: detect's decoding;
    iou_threshold: the suppression of ``nms`` and ``vote``. The greedy merge's own settings are
    :class:`overfeat.runtime.merge.MergeConfig`, given to the Predictor.
    """

    top_k: int = 5
    max_boxes: int | None = None
    min_score: float = 0.2
    score_threshold: float = 0.5
    method: str = "merge"
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        positive_int("top_k", self.top_k)
        if self.max_boxes is not None:
            positive_int("max_boxes", self.max_boxes)
        for name in ("min_score", "score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
                raise InputError(f"{name} must be within 0..1, got {value!r}")
        if self.method not in METHODS:
            raise InputError(f"detection method {self.method!r}: expected one of {list(METHODS)}")

    @property
    def boxes_kept(self) -> int:
        """localize's boxes: max_boxes, or top_k when it is not given."""
        return self.top_k if self.max_boxes is None else self.max_boxes


DECODE = DecodeConfig()  # overfeat infer's decoding
EVAL_DECODE = DecodeConfig(score_threshold=0.1)  # overfeat eval's: a low threshold, so that the PR curve reaches further


def default_tasks(meta) -> tuple[str, ...]:
    """Every task the model's heads allow."""
    return tuple(t for t in TASKS if all(h in meta.heads for h in TASK_HEADS[t]))


def check_tasks(tasks, meta, source: str) -> tuple[str, ...]:
    """``tasks`` (default: all the model's heads allow) validated: known, and the model has
    their heads."""
    tasks = default_tasks(meta) if tasks is None else tuple(tasks)
    unknown = [t for t in tasks if t not in TASK_HEADS]
    if unknown or not tasks:
        raise InputError(f"unknown task {unknown[0] if unknown else tasks!r}: expected some of {list(TASKS)}")
    for task in tasks:
        missing = [h for h in TASK_HEADS[task] if h not in meta.heads]
        if missing:
            raise ModelError(f"{task} needs the heads {list(TASK_HEADS[task])}; model {source} has {list(meta.heads)}")
    return tasks
