"""Export an OverFeat model to ONNX with dynamic spatial axes, metadata and a parity check.

:func:`export_onnx` writes the graph to a temporary file beside the destination, adds the
metadata contract (:mod:`overfeat.metadata`), runs ``onnx.checker``, compares ONNX Runtime with
PyTorch at every pyramid size and a few odd sizes, and only then renames the file into place.
A failed or interrupted export never leaves a partial model and never replaces a good one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from overfeat.errors import BuildError, InputError, ParityError
from overfeat.fileio import atomic_path, check_output_path, write_json
from overfeat.geometry import Size, min_input
from overfeat.limits import check_memory, forward_bytes, parameter_bytes
from overfeat.metadata import INPUT_NAME, ModelMeta
from overfeat.progress import Progress
from overfeat.runtime.compare import ErrorStats

from .model import OverFeat

# Sizes besides the pyramid checked at export: odd, non-square, never seen during tracing.
DEFAULT_CHECK_SIZES: tuple[Size, ...] = ((300, 333), (257, 421))
DEFAULT_OPSET = 18
MIN_OPSET = 18  # the exporter's native opset; TensorRT 10.x and 11.x parse 18 and later
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityRow:
    """One output at one input size: ``max_rel = max|onnx − torch| / max|torch|``."""

    size: tuple[int, int]
    batch: int
    output: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float


@dataclass(frozen=True)
class ExportReport:
    path: str
    tolerance: float
    rows: tuple[ParityRow, ...]

    @property
    def max_rel(self) -> float:
        return max((r.max_rel for r in self.rows), default=0.0)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and self.max_rel <= self.tolerance

    def to_dict(self) -> dict:
        return {
            "model": self.path,
            "tolerance": self.tolerance,
            "relative_error": "max|onnx - torch| / max|torch| per output and size",
            "passed": self.passed,
            "max_rel": self.max_rel,
            "results": [asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        lines = [f"{'size':>9}  {'output':<11} {'shape':<20} {'max abs':>10} {'max rel':>10}"]
        for r in self.rows:
            size = f"{r.size[0]}x{r.size[1]}"
            lines.append(f"{size:>9}  {r.output:<11} {str(list(r.shape)):<20} {r.max_abs:10.2e} {r.max_rel:10.2e}")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"parity {verdict}: worst relative error {self.max_rel:.2e} (tolerance {self.tolerance:.0e})")
        return "\n".join(lines)


def export_onnx(
    model: OverFeat,
    output: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    check_sizes: Sequence[Size] = DEFAULT_CHECK_SIZES,
    tolerance: float = DEFAULT_TOLERANCE,
    report_path: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    source_format: str | None = None,
) -> ExportReport:
    """Export ``model`` to ``output`` (ONNX), verified against PyTorch.

    Args:
        classes: class names written into the metadata (default ``class_0..``).
        opset: ONNX opset (≥ 18).
        batch: ``None`` for a dynamic batch axis, or a fixed batch size.
        check_sizes: (H, W) sizes checked in addition to the model's pyramid.
        tolerance: largest accepted ``max|onnx − torch| / max|torch|`` for any output and size.
        report_path: where the parity report is saved as JSON (default: ``<output>.parity.json``
            beside the model).
        source_format: how the weights were read (``state-dict``, ``overfeat-release``), recorded
            in the metadata as ``overfeat.source_format``.

    Returns the parity report. Raises :class:`ParityError` (the model is not written) when the
    relative error exceeds ``tolerance``, :class:`InputError` for bad arguments.
    """
    progress = progress or Progress(enabled=False)
    output = check_output_path(output, "output model")
    report_path = check_output_path(report_path or output.with_suffix(".parity.json"), "parity report")
    meta = model.metadata(classes)
    if source_format:
        meta = dataclasses.replace(meta, extra={**meta.extra, "overfeat.source_format": source_format})
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
        raise InputError(f"`tolerance` {tolerance!r}: expected a finite number ≥ 0")
    sizes = _parity_sizes(meta, check_sizes, batch or 2, model.width)
    import onnx

    if not isinstance(opset, int) or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise InputError(f"opset {opset!r} is not supported: expected {MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise InputError(f"batch must be a positive integer or dynamic, got {batch!r}")

    model = model.eval()
    with atomic_path(output) as tmp:
        with progress.step(f"exporting {meta.arch} (width {model.width:g}, {_count(model) / 1e6:.1f}M parameters) to ONNX"):
            program = _torch_export(model, meta, opset, batch)
            for key, value in meta.to_props().items():
                program.model.metadata_props[key] = value
            _name_map_axes(program.model)
            program.save(str(tmp), external_data=False)
        with progress.step("checking the ONNX graph"):
            try:
                onnx.checker.check_model(str(tmp), full_check=True)
            except onnx.checker.ValidationError as exc:
                raise BuildError(f"the exported graph failed onnx.checker: {str(exc).splitlines()[0]}") from None
        rows = _parity(model, tmp, sizes, batch or 2, seed, progress)
        report = ExportReport(str(output), tolerance, tuple(rows))
        write_json(report_path, report.to_dict())
        if not report.passed:
            raise ParityError(
                f"ONNX output differs from PyTorch by {report.max_rel:.2e} (relative), more than the tolerance {tolerance:.0e}; {output} was not written; details in {report_path}"
            )
    return report


def _parity_sizes(meta: ModelMeta, check_sizes: Sequence[Size], batch: int, width: float) -> list[Size]:
    """The sizes the parity check runs, each refused when it is below the window or when PyTorch
    and ONNX Runtime running it side by side would need more memory than the limit."""
    smallest = min_input(meta.geometry)
    sizes = list(dict.fromkeys([*meta.pyramid, *(tuple(s) for s in check_sizes)]))
    weights = 3 * parameter_bytes(meta.arch, width, meta.num_classes, meta.heads)  # PyTorch, the ONNX file, ONNX Runtime
    for h, w in sizes:
        if min(h, w) < smallest:
            raise InputError(
                f"check size {h}x{w} is smaller than the model's {smallest}x{smallest} window: give at least {smallest} pixels per side"
            )
        need = weights + 2 * forward_bytes(meta.arch, (h, w), batch, width, meta.fine_stride)
        check_memory(need, f"the parity check at {h}x{w} (`check_sizes`, batch {batch})")
    return sizes


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _TupleOutputs(torch.nn.Module):
    """Returns the model's outputs as a tuple in the metadata's order (the ONNX output order)."""

    def __init__(self, model: OverFeat, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        return tuple(outputs[n] for n in self.names)


def _torch_export(model: OverFeat, meta: ModelMeta, opset: int, batch: int | None):
    from torch.export import Dim

    window = min_input(meta.geometry)
    # A non-square example keeps the exporter from tying height and width together.
    example = torch.zeros(batch or 2, 3, window + 2 * meta.stride, window + 3 * meta.stride)
    axes = {2: Dim("height", min=window), 3: Dim("width", min=window)}
    if batch is None:
        axes[0] = Dim("batch", min=1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                _TupleOutputs(model, meta.output_names),
                (example,),
                None,
                input_names=[INPUT_NAME],
                output_names=list(meta.output_names),
                dynamic_shapes={"image": axes},
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise BuildError(f"torch.onnx.export failed: {exc}\n{chatter.getvalue()[-2000:]}") from exc


def _name_map_axes(model) -> None:
    """Name the outputs' spatial axes ``map_height``/``map_width`` instead of the exporter's
    arithmetic expressions (the exact sizes come from the ``overfeat.geometry`` metadata)."""
    import onnx_ir as ir

    for value in model.graph.outputs:
        dims = list(value.shape)
        value.shape = ir.Shape([*dims[:2], "map_height", "map_width"])


def _parity(model: OverFeat, path: Path, sizes: Sequence[Size], batch: int, seed: int, progress: Progress) -> list[ParityRow]:
    from overfeat.runtime.backends.onnxruntime import session as ort_session

    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(seed)
    rows: list[ParityRow] = []
    for h, w in progress.track(sizes, f"parity with PyTorch (ONNX Runtime, batch {batch})"):
        image = rng.standard_normal((batch, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(image))
        got = dict(zip(names, session.run(names, {INPUT_NAME: image}), strict=True))
        for name in names:
            ref = expected[name].numpy()
            if got[name].shape != ref.shape:
                raise ParityError(
                    f"output {name!r} at {h}x{w}: ONNX shape {list(got[name].shape)}, PyTorch shape {list(ref.shape)}"
                )
            stats = ErrorStats.of([(ref, got[name])])
            max_abs, scale = stats.max_abs, stats.scale
            max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
            rows.append(ParityRow((h, w), batch, name, tuple(ref.shape), max_abs, max_rel))
    return rows
