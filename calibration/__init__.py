"""Precision as verified ONNX transforms: INT8 calibration (Q/DQ by TensorRT's rules), FP16, and
the accuracy gates that refuse a conversion that changes the answers.

Modules, in the order of the data flow: :mod:`.source` (calibration and check images, fed
through the runtime's own preprocessing), :mod:`.ranges` (activation ranges and their cache),
:mod:`.int8` and :mod:`.fp16` (the transforms), :mod:`.structure` (the Q/DQ rule checker),
:mod:`.gate` (comparison with fp32), :mod:`.sensitivity` (which layers INT8 hurts),
:mod:`.pipeline` (``overfeat calibrate`` and ``overfeat convert``). Importing this package
loads nothing heavy; onnx and onnxruntime are imported by the functions that use them.
"""
