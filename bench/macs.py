"""Multiply-accumulates of an ONNX model at given input sizes, counted from its Conv nodes.

For each ``Conv``: output elements × (input channels / groups) × kernel height × kernel width,
with the output shape from ONNX shape inference at that input size. The weight shape is read
from the initializer, through a ``DequantizeLinear`` for Q/DQ files. Pooling and element-wise
work are not counted (they are memory-bound and small next to the convolutions).
"""

from __future__ import annotations

import os

from overfeat.errors import ModelError
from overfeat.metadata import INPUT_NAME


def count_macs(path: str | os.PathLike[str], sizes: list[tuple[int, int]], batch: int = 1) -> dict[tuple[int, int], int]:
    """``{(H, W): MACs}`` for a batch of ``batch`` images at each size."""
    import onnx

    model = onnx.load(str(path))
    _topological(model.graph)  # shape inference reads nodes in order; quantizers append their Q/DQ nodes last
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}

    def weight_shape(name: str) -> tuple[int, ...]:
        seen = 0
        while name not in shapes and name in producers and seen < 4:  # through DequantizeLinear / Cast
            name = producers[name].input[0]
            seen += 1
        if name not in shapes:
            raise ModelError(f"model {path}: a Conv weight ({name}) is not a constant; cannot count its MACs")
        return shapes[name]

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        raise ModelError(f"model {path} has no Conv nodes")
    kernels = {}
    for node in convs:
        w = weight_shape(node.input[1])
        kernels[node.output[0]] = w[1] * w[2] * w[3]
    result = {}
    graph_input = next(i for i in model.graph.input if i.name == INPUT_NAME)
    for h, w in sizes:
        dims = graph_input.type.tensor_type.shape.dim
        for d, value in zip(dims, (batch, 3, h, w), strict=True):
            d.Clear()
            d.dim_value = value
        del model.graph.value_info[:]
        inferred = onnx.shape_inference.infer_shapes(model)
        out_shapes = {
            v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.value_info, *inferred.graph.output]
        }
        total = 0
        for name, per_output in kernels.items():
            shape = out_shapes.get(name)
            if not shape or not all(shape):
                raise ModelError(f"model {path}: shape inference gave no shape for Conv output {name} at {h}x{w}")
            elements = 1
            for s in shape:
                elements *= s
            total += elements * per_output
        result[(h, w)] = total
    return result


def _topological(graph) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ModelError("the graph has a cycle or an input nobody produces; cannot count its MACs")
        taken = {id(n) for n in ready}
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if id(n) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)
