"""The Q/DQ structural checker: does an INT8 ONNX file follow TensorRT's rules?

Rules (DESIGN.md, "Precision lives in the ONNX file"), each checked on every node:

- ``opset``: the default-domain opset is at least 13 (per-axis QuantizeLinear/DequantizeLinear).
- ``int8-zero-point``: every QuantizeLinear and DequantizeLinear has an explicit zero point,
  int8, all zero (symmetric). A missing zero point means uint8 in ONNX, so it is refused too.
- ``per-channel-weights``: the DequantizeLinear of a Conv weight has one scale per output
  channel on ``axis`` 0.
- ``per-tensor-activations``: a Q/DQ of an activation (anything not a weight) has one scale.
- ``float-bias``: a Conv bias is a float initializer, not dequantized.
- ``float-outputs``: no graph output is produced by a QuantizeLinear or DequantizeLinear.

Needs only ``onnx``; ``overfeat inspect`` runs it on any file holding Q/DQ nodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Violation:
    node: str  # the node's name (or its op type and index when it has none)
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class QdqSummary:
    quantize: int
    dequantize: int
    quantized_convs: int  # Conv nodes whose input and weight are both dequantized
    float_convs: tuple[str, ...]  # Conv nodes left in float
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [
            f"Q/DQ       {self.quantize} QuantizeLinear, {self.dequantize} DequantizeLinear; "
            f"{self.quantized_convs} Conv in int8, {len(self.float_convs)} in float"
            + (f" ({', '.join(self.float_convs)})" if self.float_convs else ""),
        ]
        if self.ok:
            lines.append("TensorRT   Q/DQ rules hold (int8 zero points 0, per-channel weights on axis 0, per-tensor activations, float bias and outputs)")
        else:
            lines.append(f"TensorRT   {len(self.violations)} Q/DQ rule violations:")
            lines += [f"           {v}" for v in self.violations]
        return "\n".join(lines)


def check_qdq(model) -> QdqSummary:
    """Check an ``onnx.ModelProto`` against the rules above."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    tensors = {**consts, **inits}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    violations: list[Violation] = []

    def name_of(node, index: int) -> str:
        return node.name or f"{node.op_type}#{index}"

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        violations.append(Violation("(model)", "opset", f"opset {opset}, expected at least 13 for per-channel Q/DQ"))

    def array(name: str):
        return numpy_helper.to_array(tensors[name]) if name in tensors else None

    weight_dq = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "Conv" and len(node.input) > 1:
            w = producer.get(node.input[1])
            if w is not None and w.op_type == "DequantizeLinear":
                weight_dq.add(id(w))
                scale = array(w.input[1])
                axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
                channels = array(w.input[0]).shape[0] if array(w.input[0]) is not None else None
                if scale is None or scale.ndim != 1 or axis != 0 or (channels is not None and scale.shape[0] != channels):
                    got = "?" if scale is None else f"scale shape {list(scale.shape)}, axis {axis}"
                    violations.append(Violation(name_of(w, index), "per-channel-weights", f"weight of Conv {node.name!r}: got {got}, expected {channels} scales on axis 0"))
            if len(node.input) > 2 and node.input[2]:
                b = producer.get(node.input[2])
                if b is not None and b.op_type == "DequantizeLinear":
                    violations.append(Violation(name_of(b, index), "float-bias", f"bias of Conv {node.name!r} is dequantized, expected a float initializer"))
    for index, node in enumerate(graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = name_of(node, index)
        if len(node.input) < 3 or not node.input[2]:
            violations.append(Violation(label, "int8-zero-point", "no zero point (ONNX then means uint8), expected an int8 zero point of 0"))
        else:
            zp = tensors.get(node.input[2])
            if zp is None:
                violations.append(Violation(label, "int8-zero-point", f"zero point {node.input[2]!r} is not a constant"))
            elif zp.data_type != TensorProto.INT8:
                violations.append(Violation(label, "int8-zero-point", f"zero point type {TensorProto.DataType.Name(zp.data_type)}, expected INT8"))
            elif np.any(numpy_helper.to_array(zp) != 0):
                violations.append(Violation(label, "int8-zero-point", f"zero point {numpy_helper.to_array(zp).ravel()[:4].tolist()}, expected 0 (symmetric)"))
        if id(node) not in weight_dq:
            scale = array(node.input[1])
            if scale is None or scale.size != 1:
                violations.append(Violation(label, "per-tensor-activations", f"activation {node.input[0]!r}: got {'a non-constant scale' if scale is None else f'{scale.size} scales'}, expected one"))
    for output in graph.output:
        node = producer.get(output.name)
        if node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            violations.append(Violation(node.name or node.op_type, "float-outputs", f"graph output {output.name!r} comes from {node.op_type}, expected the float result of its layer"))
    counts = Counter(n.op_type for n in graph.node)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized = [n for n in convs if all((p := producer.get(n.input[i])) is not None and p.op_type == "DequantizeLinear" for i in (0, 1))]
    floats = tuple(n.name for n in convs if n not in quantized)
    return QdqSummary(counts["QuantizeLinear"], counts["DequantizeLinear"], len(quantized), floats, tuple(violations))
