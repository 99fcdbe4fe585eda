"""Triton Python-backend model: the network in ONNX Runtime (for servers without its backend).

Copied into a repository by ``overfeat triton-repo --net python`` as ``NAME_net/1/model.py``
beside ``model.onnx``. Input ``image`` [N, 3, H, W] float32; outputs the model's maps.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from overfeat.runtime.backends.onnxruntime import OnnxRuntimeBackend

        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.backend = OnnxRuntimeBackend(str(path))
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
                maps = self.backend.run({"image": image})
                tensors = [pb_utils.Tensor(name, maps[name]) for name in self.outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # a bad request is its own error; the model keeps serving
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)[:500])))
        return responses

    def finalize(self):
        self.backend.close()
