"""What to export: a checkpoint's own description reconciled with the settings asked for.

A checkpoint written by ``overfeat train`` describes its network (arch, classes, heads, width,
box regressor); a plain state_dict does not. :func:`resolve` takes the description where there
is one, refuses a setting that contradicts it, and fills in the defaults (the paper's network,
1000 classes, the ``cls`` head); :func:`export_checkpoint` builds, loads and exports the result.
The command line (``overfeat export``) and the benchmark scripts both export through here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from overfeat.errors import InputError
from overfeat.geometry import Size
from overfeat.metadata import read_class_names
from overfeat.progress import Progress

from .checkpoint import load_checkpoint
from .model import build_model
from .onnx_export import DEFAULT_CHECK_SIZES, DEFAULT_OPSET, DEFAULT_TOLERANCE, ExportReport, export_onnx
from .release import CLASSES, RELEASE, detect, load_release
from .torch_backend import checkpoint_info


@dataclass(frozen=True)
class ExportSettings:
    """The network asked for; ``None``: from the checkpoint's description, else the default.

    shared_box: the regressor predicts 4 numbers shared by the classes (a checkpoint trained so
    implies it); coarse: export the coarse map (no pooling offsets); classes_file: class names,
    one per line; seed: random initialization (no checkpoint) and the parity inputs.
    """

    arch: str | None = None
    num_classes: int | None = None
    heads: tuple[str, ...] | None = None
    width: float | None = None
    shared_box: bool = False
    coarse: bool = False
    classes_file: str | None = None
    seed: int = 0
    checkpoint_format: str = "auto"  # auto, state-dict or overfeat-release (the authors' weight files)


@dataclass(frozen=True)
class ModelSpec:
    """The network to build, every setting decided."""

    arch: str
    num_classes: int
    heads: tuple[str, ...]
    width: float
    loc_per_class: bool
    fine_stride: bool
    classes: tuple[str, ...] | None
    seed: int
    source_format: str = "state-dict"  # how the checkpoint is read: state-dict or overfeat-release


def resolve(checkpoint: str | os.PathLike[str] | None, settings: ExportSettings = ExportSettings()) -> ModelSpec:
    """The network of ``checkpoint`` (None: random weights) as ``settings`` ask for it."""
    released = detect(checkpoint, settings.checkpoint_format, settings.arch) if checkpoint else None
    if released:
        return _released(checkpoint, released, settings)
    info = (checkpoint_info(checkpoint) if checkpoint else None) or {}
    for key in ("arch", "num_classes", "heads", "width"):
        given = getattr(settings, key)
        if info and given is not None and given != info[key]:
            raise InputError(
                f"`{key}` {given} contradicts checkpoint {checkpoint}, which was trained with {info[key]}; leave `{key}` out"
            )
    arch = settings.arch or info.get("arch")
    if arch is None:
        raise InputError("`arch` is required (fast or accurate) unless the checkpoint was written by 'overfeat train'")
    num_classes = settings.num_classes or info.get("num_classes", 1000)
    classes = read_class_names(settings.classes_file, num_classes) if settings.classes_file else info.get("classes")
    return ModelSpec(
        arch=arch,
        num_classes=num_classes,
        heads=tuple(settings.heads or info.get("heads", ("cls",))),
        width=settings.width if settings.width is not None else info.get("width", 1.0),
        loc_per_class=not (settings.shared_box or (info and not info["box_per_class"])),
        fine_stride=not settings.coarse,
        classes=classes,
        seed=settings.seed,
    )


def _released(checkpoint, arch: str, settings: ExportSettings) -> ModelSpec:
    """The network of a released weight file: the cls head of ``arch``, 1,000 classes, full width."""
    wanted = {"num_classes": CLASSES, "heads": ("cls",), "width": 1.0}
    for key, value in wanted.items():
        given = getattr(settings, key)
        if given is not None and (tuple(given) if key == "heads" else given) != value:
            raise InputError(
                f"`{key}` {given}: the released weights of {checkpoint} are the {arch} network's cls head with {CLASSES} classes at full width; leave `{key}` out"
            )
    if settings.shared_box:
        raise InputError("`shared_box` applies to the loc head; the released weights hold the cls head only")
    classes = read_class_names(settings.classes_file, CLASSES) if settings.classes_file else None
    return ModelSpec(arch, CLASSES, ("cls",), 1.0, True, not settings.coarse, classes, settings.seed, RELEASE)


def export_checkpoint(
    checkpoint: str | os.PathLike[str] | None,
    output: str | os.PathLike[str],
    settings: ExportSettings = ExportSettings(),
    *,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    check_sizes: Sequence[Size] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    report_path: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Export ``checkpoint`` (None: random weights) to ``output``, parity-checked: the model of
    :func:`resolve`, then :func:`overfeat.export.export_onnx` (its arguments and report)."""
    spec = resolve(checkpoint, settings)
    progress = progress or Progress(enabled=False)
    model = build_model(
        spec.arch,
        spec.num_classes,
        spec.heads,
        spec.width,
        loc_per_class=spec.loc_per_class,
        fine_stride=spec.fine_stride,
        seed=spec.seed,
    )
    if checkpoint and spec.source_format == RELEASE:
        if spec.classes is None:
            progress.info(
                f"{checkpoint}: the released weights carry no class names (they are compiled into the release's library); pass `classes_file` with the 1,000 ILSVRC names, else they are class_0 ..."
            )
        with progress.step(f"loading the released {spec.arch} weights {checkpoint} (memory-mapped)"):
            load_release(model, checkpoint)
    elif checkpoint:
        with progress.step(f"loading {checkpoint}"):
            load_checkpoint(model, checkpoint)
    return export_onnx(
        model,
        output,
        classes=spec.classes,
        opset=opset,
        batch=batch,
        check_sizes=DEFAULT_CHECK_SIZES if check_sizes is None else check_sizes,
        tolerance=tolerance,
        report_path=report_path,
        seed=spec.seed,
        progress=progress,
        source_format=spec.source_format if checkpoint else None,
    )
