"""Triton Python-backend model: an image in, overfeat's results out.

Copied into a repository by ``overfeat triton-repo`` as ``NAME/1/model.py``. It runs
``overfeat.runtime`` (the pyramid, the decoding, the greedy merge) with a backend that calls the
network model through Business Logic Scripting, so the network runs wherever Triton runs it; with
``--net python`` (ONNX Runtime in the Python backend) it runs the network's ONNX file itself
instead, sparing a round trip of every scale's batch between two backend processes.

Input ``IMAGE``: RGB, UINT8 [H, W, 3]. Request parameters (all optional): ``task``, ``top_k``,
``min_score``, ``score_threshold``, ``method``, ``iou_threshold``. Outputs: ``RESULT`` (the
runtime's JSON of the result), ``LABELS`` [K], ``SCORES`` [K] and ``BOXES`` [K, 4] (x1, y1,
x2, y2; classification: the top-k classes and no boxes; localization and detection: the boxes,
even none).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

DECODE = {"top_k": int, "min_score": float, "score_threshold": float, "method": str, "iou_threshold": float}


class _Network:
    """The runtime's backend protocol over BLS: each scale's batch goes to the network model
    (one model, or one per plan size)."""

    name = "triton-bls"

    def __init__(self, meta, routes, source):
        self.meta, self.routes, self.source = meta, routes, source
        self.output_names = meta.output_names

    def run(self, feeds):
        from overfeat.errors import BackendError

        image = np.ascontiguousarray(feeds["image"])
        h, w = image.shape[2:]
        model = self.routes.get(f"{h}x{w}", self.routes.get("*"))
        if model is None:
            raise BackendError(f"no network model serves {h}x{w}; the repository's plans serve {sorted(self.routes)}")
        request = pb_utils.InferenceRequest(
            model_name=model, requested_output_names=list(self.output_names), inputs=[pb_utils.Tensor("image", image)]
        )
        response = request.exec()
        if response.has_error():
            raise BackendError(f"the network model {model} failed: {response.error().message()}")
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}

    def close(self):
        pass


class TritonPythonModel:
    def initialize(self, args):
        from overfeat.metadata import ModelMeta
        from overfeat.runtime import Predictor

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        meta = ModelMeta.from_props({k: v for k, v in params.items() if k.startswith("overfeat.")}, config["name"])
        local = params.get("overfeat_local_model")
        if local:  # the network's ONNX file, run here: no round trip through another model per scale
            from pathlib import Path

            from overfeat.runtime.backends.onnxruntime import OnnxRuntimeBackend

            network = OnnxRuntimeBackend(str(Path(args["model_repository"]) / local))
        else:
            network = _Network(meta, json.loads(params["overfeat_routes"]), config["name"])
        pyramid = json.loads(params["overfeat_pyramid"])
        pyramid = [tuple(s) for s in pyramid] if isinstance(pyramid, list) else pyramid
        self.task = params["overfeat_task"]
        flip, max_pixels = json.loads(params["overfeat_flip"]), int(params["overfeat_max_pixels"])
        self.predictor = Predictor(network, pyramid=pyramid, flip=flip, max_pixels=max_pixels)

    def _one(self, request):
        from overfeat.errors import InputError
        from overfeat.runtime.tasks import DecodeConfig

        tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        image = tensor.as_numpy() if tensor is not None else None
        if image is None or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = "nothing" if image is None else f"{image.dtype} {list(image.shape)}"
            raise InputError(f"IMAGE: got {got}, expected an RGB image, UINT8 [H, W, 3]")
        settings = json.loads(request.parameters() or "{}")
        unknown = sorted(set(settings) - set(DECODE) - {"task"})
        if unknown:
            raise InputError(f"unknown request parameters {unknown}: expected task or {', '.join(DECODE)}")
        task = settings.get("task", self.task)
        config = DecodeConfig(**{k: DECODE[k](v) for k, v in settings.items() if k in DECODE})
        result = self.predictor.predict(image, (task,), config)[task]
        items = result.classes if task == "classify" else result.boxes  # LABELS and BOXES pair up
        boxes = np.asarray([b.box for b in result.boxes], dtype=np.float32).reshape(-1, 4)
        return [
            pb_utils.Tensor("RESULT", np.array([json.dumps(result.to_dict()).encode()], dtype=np.object_)),
            pb_utils.Tensor("LABELS", np.asarray([i.label for i in items], dtype=np.int32)),
            pb_utils.Tensor("SCORES", np.asarray([i.score for i in items], dtype=np.float32)),
            pb_utils.Tensor("BOXES", boxes),
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._one(request)))
            except Exception as exc:  # a bad request is its own error; the model keeps serving
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)[:500])))
        return responses
