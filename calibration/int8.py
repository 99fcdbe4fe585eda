"""INT8 as an ONNX-to-ONNX transform: explicit Q/DQ by TensorRT's rules.

:func:`quantize_int8` hands the fp32 model and its activation ranges to onnxruntime's QDQ
quantizer (the implementation behind ``quantize_static``) with symmetric int8 activations and
weights, per-channel weight scales, biases left float; then removes the Q/DQ pair that the
quantizer puts on each graph output, so outputs are the float results of their layers, and
gives each excluded layer its float input back (the quantizer feeds every reader of a
quantized tensor through the same Q/DQ pair, so a layer kept in float would otherwise read
the int8-rounded trunk output another head's quantized layer needs). The
overfeat metadata is carried over with ``precision`` ``int8`` and an ``overfeat.quantization``
record (method, calibration data, excluded nodes). The file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from overfeat.errors import BuildError, InputError
from overfeat.fileio import atomic_path, private_link, work_dir

from .ranges import Ranges


def conv_nodes(model) -> list[str]:
    """Names of the Conv nodes of an ``onnx.ModelProto``: the layers INT8 can quantize."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def check_exclude(model, exclude: Sequence[str]) -> tuple[str, ...]:
    names = conv_nodes(model)
    unknown = [e for e in exclude if e not in names]
    if unknown:
        raise InputError(f"`exclude` {unknown[0]!r} is not a Conv node of the model; its Conv nodes are: {', '.join(names)}")
    return tuple(dict.fromkeys(exclude))


def quantize_int8(
    source: str | os.PathLike[str], ranges: Ranges, output: str | os.PathLike[str], exclude: Sequence[str] = ()
) -> Path:
    """Write the INT8 Q/DQ model of ``source`` to ``output``."""
    import onnx

    model = quantized_model(source, ranges, exclude)
    with atomic_path(output) as tmp:
        onnx.save(model, str(tmp))
    return Path(output)


def quantized_model(source: str | os.PathLike[str], ranges: Ranges, exclude: Sequence[str] = ()):
    """The INT8 Q/DQ ``onnx.ModelProto`` of ``source`` (not written)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry

    with work_dir("int8") as tmp:  # shape inference writes beside its input
        model = load_model_with_shape_infer(private_link(source, tmp))
    exclude = check_exclude(model, exclude)
    meta = {p.key: p.value for p in model.metadata_props if p.key.startswith("overfeat.")}  # not the quantizer's own keys
    try:
        quantizer = QDQQuantizer(
            model,
            True,
            False,
            QuantType.QInt8,
            QuantType.QInt8,
            ranges.tensors_data(),
            [],
            list(exclude),
            list(QDQRegistry),
            {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        quantizer.quantize_model()
    except Exception as exc:  # the quantizer's own errors (missing range, unsupported graph)
        raise BuildError(f"INT8 quantization of {source} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    result = quantizer.model.model
    _float_outputs(result)
    _float_inputs(result, exclude)
    meta["overfeat.precision"] = json.dumps("int8")
    meta["overfeat.quantization"] = json.dumps(
        {
            "method": ranges.method.name,
            "percentile": ranges.method.percentile,
            "calibration": ranges.data,
            "source_sha256": ranges.model_sha256,
            "excluded": list(exclude),
        }
    )
    del result.metadata_props[:]
    for key, value in meta.items():
        result.metadata_props.add(key=key, value=value)
    return result


def _float_inputs(model, exclude: Sequence[str]) -> None:
    """Rewire each excluded node that reads an activation through a QuantizeLinear →
    DequantizeLinear pair to read the float tensor itself; drop pairs nothing reads any more."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    excluded = set(exclude)
    for node in graph.node:
        if node.name not in excluded:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":  # an activation's pair (weights are initializers)
                node.input[i] = q.input[0]
    _drop_unread(graph)


def _drop_unread(graph) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads, then initializers nothing reads."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [
            n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in read for o in n.output)
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def _float_outputs(model) -> None:
    """Remove the QuantizeLinear → DequantizeLinear pair in front of each graph output (and
    the initializers only those pairs used)."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    drop = []
    for output in graph.output:
        dq = producer.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or uses.get(q.output[0], 0) != 1:
            continue
        value = q.input[0]  # the float tensor the pair quantizes
        for node in graph.node:  # every other reader of it reads the output name instead
            for i, name in enumerate(node.input):
                if name == value and node is not q:
                    node.input[i] = output.name
        layer = producer[value]
        layer.output[list(layer.output).index(value)] = output.name
        drop += [q, dq]
    for node in drop:
        graph.node.remove(node)
    _drop_unread(graph)  # the removed pairs' scales and zero points
