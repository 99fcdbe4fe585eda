"""Load trained weights into an :class:`~overfeat.export.model.OverFeat` model.

Accepted files: a PyTorch ``state_dict`` saved with ``torch.save`` (``.pt``/``.pth``, read with
``weights_only=True``: no code in a checkpoint is ever run), optionally wrapped as
``{"state_dict": {...}}``, or a ``.safetensors`` file. Keys and shapes must match the model
exactly; a mismatch names the tensor with the expected and the found shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from overfeat.errors import InputError, ModelError

SUFFIXES = (".pt", ".pth", ".safetensors")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` without running any code it might contain."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix not in SUFFIXES:
        raise InputError(f"checkpoint {path}: unknown file type {path.suffix!r}, expected one of {', '.join(SUFFIXES)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a checkpoint at all
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"checkpoint {path} could not be read ({reason[:160]}); is it complete and saved with torch.save or safetensors?"
        ) from None
    if isinstance(state, Mapping) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise ModelError(
            f"checkpoint {path} holds a {type(state).__name__}, expected a non-empty state_dict (a dict of tensor names to tensors)"
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"checkpoint {path} is not a state_dict: entry {bad[0]!r} is not a named tensor")
    return dict(state)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a :class:`ModelError` naming the first missing, unexpected or misshapen tensor."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise ModelError(
            f"{source} lacks tensor {missing[0]!r} (shape {list(expected[missing[0]].shape)}) and {len(missing) - 1} more; check `arch` and `heads`"
        )
    if unexpected:
        raise ModelError(
            f"{source} has tensor {unexpected[0]!r} the model does not (and {len(unexpected) - 1} more); check `arch` and `heads`"
        )
    for key, tensor in expected.items():
        found = state[key]
        if tuple(found.shape) != tuple(tensor.shape):
            raise ModelError(
                f"{source}: tensor {key!r} has shape {list(found.shape)}, the model expects {list(tensor.shape)}; check `num_classes` and `width`"
            )
        if not found.is_floating_point():
            raise ModelError(f"{source}: tensor {key!r} has dtype {found.dtype}, expected a floating-point tensor")


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Check and load the weights at ``path`` into ``model`` (in place); returns the model."""
    state = read_state_dict(path)
    check_state_dict(model, state, source=f"checkpoint {path}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model
