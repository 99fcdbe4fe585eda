"""FP16 as an ONNX-to-ONNX transform: weights and activations fp16, inputs and outputs fp32.

onnxruntime's float16 converter (``onnxruntime.transformers.float16``) rewrites the graph with
``keep_io_types``, so the input and outputs stay fp32 with a Cast at each end; the overfeat
metadata is carried over with ``precision`` ``fp16``. The file is written atomically.

ONNX Runtime's CPU provider runs the file; for the operators it has no fp16 kernel for
(Conv on most x86 CPUs) it inserts casts and computes in fp32, so on the CPU the file's
accuracy reflects the fp16 rounding of weights and layer boundaries. TensorRT computes in fp16.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from overfeat.errors import BuildError
from overfeat.fileio import atomic_path


def convert_fp16(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    try:
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    except Exception as exc:
        raise BuildError(f"FP16 conversion of {source} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    meta["overfeat.precision"] = json.dumps("fp16")
    del half.metadata_props[:]
    for key, value in meta.items():
        half.metadata_props.add(key=key, value=value)
    with atomic_path(output) as tmp:
        onnx.save(half, str(tmp))
    return Path(output)
