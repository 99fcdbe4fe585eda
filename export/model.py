"""OverFeat fast and accurate networks as fully convolutional PyTorch modules.

``build_model("accurate")`` is exactly the paper's Table 1 with its "fc" layers as
convolutions (144,656,488 parameters with 1000 classes and the ``cls`` head; the fast model
145,920,872). ``width`` scales every hidden channel count for small models of the same topology.

Fine stride: the trunk's last k×k pooling runs with stride 1 and the first "fc" convolution of
each head with dilation k, which is the paper's k²-offset evaluation in one static graph
(see :mod:`overfeat.geometry`). ``set_fine_stride(False)`` gives the coarse map instead; the
weights are the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from overfeat.errors import InputError
from overfeat.geometry import ArchSpec, get_arch, spatial_ops
from overfeat.limits import check_memory, parameter_bytes
from overfeat.metadata import HEADS, MAX_CLASSES, OUTPUT_NAMES, RELEASED_MEAN, RELEASED_STD, ModelMeta


class OverFeat(nn.Module):
    """Shared trunk plus the heads ``cls`` (C scores), ``loc`` (boxes), ``det`` (C+1 scores).

    ``forward(image)`` takes [N, 3, H, W] normalised float images with H, W ≥ the window and
    returns ``{"scores": ..., "boxes": ..., "det_scores": ...}`` for the heads the model has,
    each [N, channels, h, w].
    """

    def __init__(
        self,
        spec: ArchSpec,
        num_classes: int,
        heads: Sequence[str],
        width: float,
        loc_per_class: bool,
        fine_stride: bool,
    ) -> None:
        super().__init__()
        self.spec, self.num_classes, self.heads = spec, num_classes, tuple(heads)
        self.width, self.loc_per_class = width, loc_per_class
        self.features = _trunk(spec, width)
        trunk_out = _scaled(spec.trunk[-1].channels, width)
        outputs = {"cls": num_classes, "loc": 4 * num_classes if loc_per_class else 4, "det": num_classes + 1}
        hidden = {"cls": spec.classifier, "loc": spec.regressor, "det": spec.classifier}
        for head in self.heads:
            widths = [_scaled(c, width) for c in hidden[head]]
            setattr(self, _MODULE[head], _head(trunk_out, widths, outputs[head], spec.fc_kernel))
        self._fine = True
        self.set_fine_stride(fine_stride)
        self.reset_parameters(torch.Generator().manual_seed(0))

    @property
    def fine_stride(self) -> bool:
        return self._fine

    def set_fine_stride(self, fine: bool) -> None:
        """Switch between fine (stride-1 offset pool, dilated first "fc") and coarse maps."""
        k = self.spec.offset_pool
        self.features[-1].stride = (1, 1) if fine else (k, k)
        for head in self.heads:
            getattr(self, _MODULE[head])[0].dilation = (k, k) if fine else (1, 1)
        self._fine = bool(fine)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """He-normal weights for ReLU layers, 1/√fan_in for the output layers, zero biases."""
        outputs = {id(getattr(self, _MODULE[h])[-1]) for h in self.heads}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                gain = 1.0 if id(module) in outputs else 2.0
                with torch.no_grad():
                    module.weight.normal_(0.0, math.sqrt(gain / fan_in), generator=generator)
                    module.bias.zero_()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.compiler.is_exporting():
            _check_input(image, self.spec.window)
        features = self.features(image)
        return {OUTPUT_NAMES[h]: getattr(self, _MODULE[h])(features) for h in HEADS if h in self.heads}

    def metadata(self, classes: Sequence[str] | None = None) -> ModelMeta:
        """The ONNX metadata describing this model (class names default to ``class_0..``)."""
        names = tuple(classes) if classes is not None else tuple(f"class_{i}" for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise InputError(f"got {len(names)} class names, expected {self.num_classes} (the model's class count)")
        return ModelMeta(
            arch=self.spec.name,
            window=self.spec.window,
            stride=self.spec.stride(self._fine),
            fine_stride=self._fine,
            geometry=spatial_ops(self.spec, self._fine),
            heads=tuple(h for h in HEADS if h in self.heads),
            classes=names,
            mean=RELEASED_MEAN,
            std=RELEASED_STD,
            pyramid=self.spec.pyramid,
            box_per_class=self.loc_per_class if "loc" in self.heads else None,
            background_index=self.num_classes if "det" in self.heads else None,
        )


_MODULE = {"cls": "classifier", "loc": "regressor", "det": "detector"}


def build_model(
    arch: str,
    num_classes: int = 1000,
    heads: Iterable[str] = ("cls",),
    width: float = 1.0,
    *,
    loc_per_class: bool = True,
    fine_stride: bool = True,
    seed: int | None = None,
) -> OverFeat:
    """Build an OverFeat network in eval mode.

    Args:
        arch: ``"fast"`` or ``"accurate"``.
        num_classes: C, the number of object classes (≥ 1).
        heads: any of ``"cls"``, ``"loc"``, ``"det"``; they share the trunk.
        width: multiplier of every hidden channel count (1.0 = the paper's network).
        loc_per_class: the regressor predicts 4 numbers per class (True) or 4 shared (False).
        fine_stride: evaluate the k² pooling offsets (dense map at stride 12 / 16).
        seed: seed of the random initialisation (default 0).
    """
    spec = get_arch(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"number of classes must be a positive integer, got {num_classes!r}")
    heads = tuple(heads)
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads or len(set(heads)) != len(heads):
        raise InputError(f"bad heads {list(heads)}: expected a non-empty list of distinct names from {list(HEADS)}")
    if not (isinstance(width, (int, float)) and 0 < width <= 4 and math.isfinite(width)):
        raise InputError(f"width must be in (0, 4], got {width!r}")
    if num_classes > MAX_CLASSES:
        raise InputError(f"`num_classes` {num_classes}: at most {MAX_CLASSES} classes")
    check_memory(
        parameter_bytes(arch, width, num_classes, heads), f"the {arch} network's weights (width {width:g}, {num_classes} classes)"
    )
    model = OverFeat(spec, num_classes, heads, float(width), loc_per_class, fine_stride)
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
    return model.eval()


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _trunk(spec: ArchSpec, width: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for layer in spec.trunk:
        out_channels = _scaled(layer.channels, width)
        layers += [nn.Conv2d(in_channels, out_channels, layer.kernel, layer.stride, layer.pad), nn.ReLU(inplace=True)]
        if layer.pool:
            layers.append(nn.MaxPool2d(layer.pool, layer.pool))
        in_channels = out_channels
    return nn.Sequential(*layers)


def _head(in_channels: int, hidden: Sequence[int], out_channels: int, fc_kernel: int) -> nn.Sequential:
    """First "fc" as a fc_kernel×fc_kernel conv, then 1×1 convs; ReLU between, none at the end."""
    layers: list[nn.Module] = []
    kernel = fc_kernel
    for channels in hidden:
        layers += [nn.Conv2d(in_channels, channels, kernel), nn.ReLU(inplace=True)]
        in_channels, kernel = channels, 1
    layers.append(nn.Conv2d(in_channels, out_channels, 1))
    return nn.Sequential(*layers)


def _check_input(image: torch.Tensor, window: int) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise InputError(f"image tensor has shape {list(image.shape)}, expected [N, 3, H, W]")
    h, w = image.shape[-2:]
    if min(h, w) < window:
        raise InputError(
            f"image is {h}x{w}, smaller than the model's {window}x{window} window: give at least {window} pixels per side"
        )
