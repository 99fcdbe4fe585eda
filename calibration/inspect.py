"""``overfeat inspect``: what an exported ONNX file holds, read without running it: metadata,
inputs, outputs, op counts and, for a Q/DQ file, TensorRT's rules checked node by node."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from overfeat.errors import InputError, ModelError
from overfeat.metadata import ModelMeta

from .structure import QdqSummary, check_qdq


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ModelInfo:
    path: str
    meta: ModelMeta
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    opset: int
    op_counts: dict[str, int]
    qdq: QdqSummary | None = None  # the structural check, for files holding Q/DQ nodes

    def report(self) -> str:
        m = self.meta
        lines = [
            f"model      {self.path}",
            f"arch       {m.arch}  window {m.window}  stride {m.stride}  ({'fine' if m.fine_stride else 'coarse'} stride)",
            f"heads      {', '.join(m.heads)}  precision {m.precision}  opset {self.opset}",
            f"classes    {m.num_classes}: {', '.join(m.classes[:8])}{' ...' if m.num_classes > 8 else ''}",
            f"normalise  mean {list(m.mean)}  std {list(m.std)}",
        ]
        if m.box_per_class is not None:
            lines.append(f"boxes      window-relative x1,y1,x2,y2 / window, {'per class' if m.box_per_class else 'shared'}")
        if m.background_index is not None:
            lines.append(f"background det_scores channel {m.background_index}")
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                lines.append(f"{kind:<10} {t.name} {t.dtype} [{', '.join(str(d) for d in t.shape)}]")
        lines.append("ops        " + ", ".join(f"{op} {n}" for op, n in sorted(self.op_counts.items())))
        lines.append("pyramid    input (HxW) -> dense map (h x w), windows per image")
        for size in m.pyramid:
            h, w = m.map_size(size)
            lines.append(f"           {size[0]:>4}x{size[1]:<4} -> {h:>3} x {w:<3} {h * w:>5}")
        if self.qdq is not None:
            lines.append(self.qdq.report())
        return "\n".join(lines)


def inspect_onnx(path: str | os.PathLike[str]) -> ModelInfo:
    """Read the metadata, inputs, outputs and op counts of an ONNX file (needs ``onnx``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model {path} does not exist or is not a file")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"model {path} is not a readable ONNX file ({type(exc).__name__})") from None
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))
    initializers = {i.name for i in model.graph.initializer}

    def info(values) -> tuple[TensorInfo, ...]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
            out.append(TensorInfo(v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims))
        return tuple(out)

    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    qdq = check_qdq(model) if counts.get("QuantizeLinear") or counts.get("DequantizeLinear") else None
    return ModelInfo(str(path), meta, info(model.graph.input), info(model.graph.output), opset, counts, qdq)
