"""Serving on NVIDIA Triton Inference Server: a generated model repository and a local server.

- :mod:`overfeat.serving.repository` writes a Triton model repository for an ONNX file or an
  engine manifest: the network model (ONNX Runtime, TensorRT plans or ONNX Runtime inside the
  Python backend) and a pipeline model (Python backend) that runs the pyramid, the decoding and
  the greedy merge of :mod:`overfeat.runtime`, calling the network through Business Logic
  Scripting. Every ``config.pbtxt`` is plain text made here and checked against Triton's own
  ``ModelConfig`` protobuf when ``tritonclient`` is installed.
- :mod:`overfeat.serving.server` starts a ``tritonserver`` on the loopback address with such a
  repository and stops it by its PID.
- The client side is a runtime backend, :mod:`overfeat.runtime.backends.triton`: the pyramid
  and the merge stay in the calling process, the network runs on the server.

``docs/serving.md`` tells the layout, the deployment on GPUs and what was verified where.
"""
