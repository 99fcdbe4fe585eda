"""Result dataclasses and their one JSON schema (see the README, "Results").

Every task returns a :class:`Result`; ``to_dict()`` gives plain JSON types::

    {"image": "cat.png" | null, "task": "classify" | "localize" | "detect",
     "height": 480, "width": 640, "scales": [[245, 327], ...], "flip": true,
     "classes": [{"label": 3, "name": "cat", "score": 0.91}, ...],
     "boxes": [{"label": 3, "name": "cat", "score": 12.7, "box": [x1, y1, x2, y2], "members": 41}, ...],
     "timings": {"preprocess": 0.01, "inference": 0.4, "decode": 0.002, "merge": 0.03}}

``classes`` is the classification (top-k, softmax probabilities of the mean class scores);
``localize`` fills it too. ``boxes`` (localize, detect) are in original-image pixels, best first;
``score`` is the merged boxes' accumulated confidence (or, with NMS, the kept box's probability)
and ``members`` how many candidate boxes were merged into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClassScore:
    label: int
    name: str
    score: float

    def to_dict(self) -> dict:
        return {"label": self.label, "name": self.name, "score": self.score}


@dataclass(frozen=True)
class BoxResult:
    label: int
    name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels
    members: int = 1

    def to_dict(self) -> dict:
        return {"label": self.label, "name": self.name, "score": self.score, "box": list(self.box), "members": self.members}


@dataclass(frozen=True)
class Result:
    task: str
    image: str | None
    size: tuple[int, int]  # original (height, width)
    scales: tuple[tuple[int, int], ...]
    flip: bool
    classes: tuple[ClassScore, ...] = ()
    boxes: tuple[BoxResult, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "image": self.image,
            "task": self.task,
            "height": self.size[0],
            "width": self.size[1],
            "scales": [list(s) for s in self.scales],
            "flip": self.flip,
            "classes": [c.to_dict() for c in self.classes],
            "boxes": [b.to_dict() for b in self.boxes],
            "timings": dict(self.timings),
        }

    def table(self, max_boxes: int = 20) -> str:
        """The result as ``overfeat infer`` prints it: the image, then the ranked classes or the
        first ``max_boxes`` boxes."""
        lines = [f"{self.image}  ({self.size[1]}x{self.size[0]}, {len(self.scales)} scales{', flip' if self.flip else ''})"]
        if self.task == "classify":
            lines += [f"  {rank}. {c.name:<20} {c.score:8.4f}" for rank, c in enumerate(self.classes, 1)]
        elif not self.boxes:
            lines.append("  no boxes")
        for b in self.boxes[:max_boxes]:
            box = ", ".join(f"{v:7.1f}" for v in b.box)
            lines.append(f"  {b.name:<20} {b.score:9.3f}  [{box}]  {b.members:>4} merged")
        if len(self.boxes) > max_boxes:
            lines.append(f"  ... {len(self.boxes) - max_boxes} more boxes (all in --json)")
        return "\n".join(lines)
