"""overfeat: export, build and run OverFeat networks without PyTorch at run time.

The top-level package imports only the standard library. Subpackages:

- ``overfeat.export``      PyTorch models, checkpoints and ONNX export (extra ``export``)
- ``overfeat.runtime``     NumPy-only multi-scale inference (extra ``ort`` or ``gpu``)
- ``overfeat.calibration`` INT8 calibration and precision transforms
- ``overfeat.engines``     TensorRT engine planning and building
"""

from overfeat.errors import BackendError, BuildError, InputError, ModelError, OverfeatError

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BuildError",
    "InputError",
    "ModelError",
    "OverfeatError",
    "__version__",
]
