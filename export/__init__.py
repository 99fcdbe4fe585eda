"""PyTorch OverFeat models, checkpoint loading and verified ONNX export (extra ``export``).

The names below import torch when first used (``from overfeat.export import build_model``);
importing the package alone does not, so that :mod:`overfeat.export.backend_entry`, which the
runtime finds through the ``overfeat.backends`` entry point, stays light.
"""

from overfeat.lazy import lazy_exports

_NAMES = {
    "check_state_dict": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "read_state_dict": ".checkpoint",
    "OverFeat": ".model",
    "build_model": ".model",
    "DEFAULT_CHECK_SIZES": ".onnx_export",
    "ExportReport": ".onnx_export",
    "ParityRow": ".onnx_export",
    "export_onnx": ".onnx_export",
    "ExportSettings": ".settings",
    "ModelSpec": ".settings",
    "export_checkpoint": ".settings",
    "resolve": ".settings",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_exports(__name__, _NAMES)
