"""PyTorch as an inference backend (extra ``export``): the reference the runtime is checked against.

Opens a ``.safetensors`` checkpoint written by :func:`overfeat.training.train.save_checkpoint`,
whose metadata (``overfeat.model``) names the architecture, width, heads and classes, and runs
it through the same :class:`~overfeat.runtime.Predictor` as the exported model, so the two give
comparable metrics. fp16 weights are computed in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from overfeat.errors import InputError, ModelError
from overfeat.runtime.backends import feed_image

from .checkpoint import load_checkpoint
from .model import build_model


def checkpoint_info(path: str | Path) -> dict | None:
    """The ``overfeat.model`` metadata of a safetensors checkpoint (arch, width, heads, classes);
    None when the checkpoint carries no such description (or is not safetensors)."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist or is not a file")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "overfeat.model" not in meta:
            return None
        info = json.loads(meta["overfeat.model"])
        return {
            "arch": str(info["arch"]),
            "width": float(info["width"]),
            "num_classes": int(info["num_classes"]),
            "heads": tuple(info["heads"]),
            "classes": tuple(info["classes"]),
            "box_per_class": bool(info.get("box_per_class", True)),
        }
    except Exception as exc:
        raise ModelError(f"checkpoint {path} could not be read ({str(exc).splitlines()[0][:160]})") from None


class TorchBackend:
    name = "torch"

    def __init__(self, path: str, fine_stride: bool = True) -> None:
        info = checkpoint_info(path)
        if info is None:
            raise ModelError(
                f"checkpoint {path} is not a .safetensors file with the 'overfeat.model' description 'overfeat train' writes; export it with explicit flags and evaluate the ONNX file"
            )
        self.source = str(path)
        self.model = build_model(
            info["arch"],
            info["num_classes"],
            info["heads"],
            info["width"],
            loc_per_class=info["box_per_class"],
            fine_stride=fine_stride,
        )
        load_checkpoint(self.model, path)
        self.meta = self.model.metadata(info["classes"])

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.meta.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(feed_image(feeds))))
        return {k: v.numpy() for k, v in out.items()}

    def close(self) -> None:
        self.model = None
