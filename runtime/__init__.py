"""Multi-scale OverFeat inference with NumPy and a backend; never imports PyTorch.

    from overfeat.runtime import Predictor
    with Predictor.from_path("model.onnx") as predictor:
        result = predictor.localize("cat.jpg", top_k=5)
        print(result.to_dict())

The names below are imported from their modules on first use, so that importing one module of
the package (``overfeat.runtime.tasks``, say) imports only what that module needs.
"""

from overfeat.lazy import lazy_exports

_NAMES = {
    "REGISTRY": ".backends",
    "available_backends": ".backends",
    "create_backend": ".backends",
    "decode_boxes": ".boxes",
    "iou": ".boxes",
    "nms": ".boxes",
    "nms_clusters": ".boxes",
    "nms_vote": ".boxes",
    "suppress": ".boxes",
    "DEFAULT_MAX_PIXELS": ".image",
    "as_rgb": ".image",
    "load_image": ".image",
    "resize": ".image",
    "MergeConfig": ".merge",
    "Merged": ".merge",
    "greedy_merge": ".merge",
    "Predictor": ".predictor",
    "ScaleMaps": ".predictor",
    "Scale": ".pyramid",
    "make_batch": ".pyramid",
    "pyramid_sizes": ".pyramid",
    "scales": ".pyramid",
    "BoxResult": ".results",
    "ClassScore": ".results",
    "Result": ".results",
    "DecodeConfig": ".tasks",
    "TASKS": ".tasks",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_exports(__name__, _NAMES)
