"""PyTorch OverFeat models, checkpoint loading and verified ONNX export (extra ``export``).

Importing this package imports torch.
"""

from .checkpoint import check_state_dict, load_checkpoint, read_state_dict
from .model import OverFeat, build_model
from .onnx_export import DEFAULT_CHECK_SIZES, ExportReport, ParityRow, export_onnx

__all__ = [
    "DEFAULT_CHECK_SIZES",
    "ExportReport",
    "OverFeat",
    "ParityRow",
    "build_model",
    "check_state_dict",
    "export_onnx",
    "load_checkpoint",
    "read_state_dict",
]
