"""Multi-scale OverFeat inference with NumPy and a backend; never imports PyTorch.

    from overfeat.runtime import Predictor
    with Predictor.from_path("model.onnx") as predictor:
        result = predictor.localize("cat.jpg", top_k=5)
        print(result.to_dict())
"""

from .backends import REGISTRY, available_backends, create_backend
from .boxes import decode_boxes, iou, nms, nms_clusters, nms_vote
from .image import DEFAULT_MAX_PIXELS, as_rgb, load_image, resize
from .merge import MergeConfig, Merged, greedy_merge
from .predictor import Predictor, ScaleMaps
from .pyramid import Scale, make_batch, pyramid_sizes, scales
from .results import BoxResult, ClassScore, Result

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "REGISTRY",
    "BoxResult",
    "ClassScore",
    "MergeConfig",
    "Merged",
    "Predictor",
    "Result",
    "Scale",
    "ScaleMaps",
    "as_rgb",
    "available_backends",
    "create_backend",
    "decode_boxes",
    "greedy_merge",
    "iou",
    "load_image",
    "make_batch",
    "nms",
    "nms_clusters",
    "nms_vote",
    "pyramid_sizes",
    "resize",
    "scales",
]
