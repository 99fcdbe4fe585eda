"""The Q/DQ structural checker: does an INT8 ONNX file follow TensorRT's rules?

Rules (the project's design notes, "Precision lives in the ONNX file"), each checked on every node:

- ``opset``: the default-domain opset is at least 13 (per-axis QuantizeLinear/DequantizeLinear).
- ``int8-zero-point``: every QuantizeLinear and DequantizeLinear works on int8 with a zero point
  of 0 (symmetric). Without a zero point, ONNX quantizes to uint8 unless ``output_dtype`` says
  int8, and dequantizes with 0 in the input's type: those are accepted only for int8.
- ``per-channel-weights``: the DequantizeLinear of a Conv weight (and its QuantizeLinear, when
  the weight is quantized in the graph) has one scale per output channel on ``axis`` 0 (the
  ONNX default is 1; negative axes count from the end).
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
    rounded_inputs: tuple[str, ...] = ()  # float Conv nodes that read a dequantized (int8-rounded) input

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [
            f"Q/DQ       {self.quantize} QuantizeLinear, {self.dequantize} DequantizeLinear; "
            f"{self.quantized_convs} Conv in int8, {len(self.float_convs)} in float"
            + (f" ({', '.join(self.float_convs)})" if self.float_convs else ""),
        ]
        if self.rounded_inputs:
            lines.append(
                f"           of those, {len(self.rounded_inputs)} read an int8-rounded input: {', '.join(self.rounded_inputs)}"
            )
        if self.ok:
            lines.append(
                "TensorRT   Q/DQ rules hold (int8 zero points 0, per-channel weights on axis 0, per-tensor activations, float bias and outputs)"
            )
        else:
            lines.append(f"TensorRT   {len(self.violations)} Q/DQ rule violations:")
            lines += [f"           {v}" for v in self.violations]
        return "\n".join(lines)


class _Graph:
    """An ONNX graph's constants, producers and node labels, for the rules below."""

    def __init__(self, model) -> None:
        from onnx import TensorProto, numpy_helper

        self.proto, self.to_array = TensorProto, numpy_helper.to_array
        self.model, self.graph = model, model.graph
        consts = {
            n.output[0]: n.attribute[0].t
            for n in self.graph.node
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
        }
        self.tensors = {**consts, **{i.name: i for i in self.graph.initializer}}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.index = {id(node): i for i, node in enumerate(self.graph.node)}

    def label(self, node) -> str:
        return node.name or f"{node.op_type}#{self.index[id(node)]}"

    def array(self, name: str):
        return self.to_array(self.tensors[name]) if name in self.tensors else None

    def made_by(self, name: str, op_type: str):
        """The node producing ``name`` if it is an ``op_type``, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None


def _attribute(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def check_qdq(model) -> QdqSummary:
    """Check an ``onnx.ModelProto`` against the rules above."""
    g = _Graph(model)
    violations = _opset(g)
    weights, found = _conv_weights_and_biases(g)
    violations += found
    for node in g.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            violations += _zero_point(g, node)
            if id(node) not in weights:
                violations += _per_tensor(g, node)
    violations += _float_outputs(g)
    return _summary(g, violations)


def _opset(g: _Graph) -> list[Violation]:
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return [] if opset >= 13 else [Violation("(model)", "opset", f"opset {opset}, expected at least 13 for per-channel Q/DQ")]


def _conv_weights_and_biases(g: _Graph) -> tuple[set[int], list[Violation]]:
    """The rules per-channel-weights and float-bias; also the ids of the Q and DQ nodes of Conv
    weights (the activation rule skips them)."""
    weights: set[int] = set()
    violations: list[Violation] = []
    for conv in (n for n in g.graph.node if n.op_type == "Conv"):
        if len(conv.input) > 1 and (dq := g.made_by(conv.input[1], "DequantizeLinear")) is not None:
            pair = [dq] + [
                q for q in [g.made_by(dq.input[0], "QuantizeLinear")] if q is not None
            ]  # a float weight quantized in the graph
            source = g.array(pair[-1].input[0])
            channels = source.shape[0] if source is not None and source.ndim else None
            for node in pair:
                weights.add(id(node))
                scale = g.array(node.input[1])
                axis = _attribute(node, "axis", 1)
                axis = axis + source.ndim if source is not None and axis < 0 else axis
                if scale is None or scale.ndim != 1 or axis != 0 or (channels is not None and scale.shape[0] != channels):
                    got = "a non-constant scale" if scale is None else f"scale shape {list(scale.shape)}, axis {axis}"
                    violations.append(
                        Violation(
                            g.label(node),
                            "per-channel-weights",
                            f"weight of Conv {conv.name!r}: got {got}, expected {channels} scales on axis 0",
                        )
                    )
        if len(conv.input) > 2 and conv.input[2] and (b := g.made_by(conv.input[2], "DequantizeLinear")) is not None:
            violations.append(
                Violation(g.label(b), "float-bias", f"bias of Conv {conv.name!r} is dequantized, expected a float initializer")
            )
    return weights, violations


def _zero_point(g: _Graph, node) -> list[Violation]:
    """The rule int8-zero-point on one QuantizeLinear or DequantizeLinear."""
    TensorProto, label = g.proto, g.label(node)
    if not (len(node.input) > 2 and node.input[2]):
        if node.op_type == "QuantizeLinear" and _attribute(node, "output_dtype", 0) != TensorProto.INT8:
            return [
                Violation(
                    label,
                    "int8-zero-point",
                    "no zero point and no output_dtype (ONNX then quantizes to uint8), expected an int8 zero point of 0",
                )
            ]
        if node.op_type == "DequantizeLinear" and _input_type(node, g.tensors, g.producer, TensorProto) not in (
            TensorProto.INT8,
            None,
        ):
            return [
                Violation(label, "int8-zero-point", "no zero point and a non-int8 input, expected int8 data with zero point 0")
            ]
        return []
    zp = g.tensors.get(node.input[2])
    if zp is None:
        return [Violation(label, "int8-zero-point", f"zero point {node.input[2]!r} is not a constant")]
    if zp.data_type != TensorProto.INT8:
        return [Violation(label, "int8-zero-point", f"zero point type {TensorProto.DataType.Name(zp.data_type)}, expected INT8")]
    if np.any(g.to_array(zp) != 0):
        return [Violation(label, "int8-zero-point", f"zero point {g.to_array(zp).ravel()[:4].tolist()}, expected 0 (symmetric)")]
    return []


def _per_tensor(g: _Graph, node) -> list[Violation]:
    """The rule per-tensor-activations on the Q or DQ of an activation."""
    scale = g.array(node.input[1])
    if scale is not None and scale.size == 1:
        return []
    got = "a non-constant scale" if scale is None else f"{scale.size} scales"
    return [Violation(g.label(node), "per-tensor-activations", f"activation {node.input[0]!r}: got {got}, expected one")]


def _float_outputs(g: _Graph) -> list[Violation]:
    violations = []
    for output in g.graph.output:
        node = g.producer.get(output.name)
        if node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            violations.append(
                Violation(
                    g.label(node),
                    "float-outputs",
                    f"graph output {output.name!r} comes from {node.op_type}, expected the float result of its layer",
                )
            )
    return violations


def _summary(g: _Graph, violations: list[Violation]) -> QdqSummary:
    counts = Counter(n.op_type for n in g.graph.node)
    convs = [n for n in g.graph.node if n.op_type == "Conv"]
    quantized = {id(n) for n in convs if all(g.made_by(n.input[i], "DequantizeLinear") is not None for i in (0, 1))}
    floats = tuple(g.label(n) for n in convs if id(n) not in quantized)
    rounded = tuple(g.label(n) for n in convs if id(n) not in quantized and g.made_by(n.input[0], "DequantizeLinear") is not None)
    return QdqSummary(counts["QuantizeLinear"], counts["DequantizeLinear"], len(quantized), floats, tuple(violations), rounded)


def _input_type(dq, tensors, producer, TensorProto) -> int | None:
    """The element type a DequantizeLinear reads, where the graph says it (None: unknown)."""
    if dq.input[0] in tensors:
        return tensors[dq.input[0]].data_type
    q = producer.get(dq.input[0])
    if q is not None and q.op_type == "QuantizeLinear":
        if len(q.input) > 2 and q.input[2] in tensors:
            return tensors[q.input[2]].data_type
        return next((a.i for a in q.attribute if a.name == "output_dtype"), TensorProto.UINT8)
    return None
