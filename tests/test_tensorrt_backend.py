"""The TensorRT backend on a GPU: plans built here, results equal to ONNX Runtime's."""

import hashlib

import numpy as np

from tests.conftest import requires_gpu


def _build_static_plan(onnx_path, shape):
    """A minimal plan build with TensorRT's API (the full builder is 'overfeat build')."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = trt.NetworkDefinitionCreationFlag
    network = builder.create_network((1 << int(flags.STRONGLY_TYPED)) if hasattr(flags, "STRONGLY_TYPED") else 0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", shape, shape, shape)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    return bytes(plan)


@requires_gpu
def test_tensorrt_matches_onnxruntime(small_onnx, tmp_path):
    import tensorrt as trt

    from overfeat.engines.manifest import Manifest, PlanEntry
    from overfeat.fileio import sha256_file
    from overfeat.runtime import Predictor
    from overfeat.runtime.backends.tensorrt import _check, _cudart

    path, _ = small_onnx
    reference = Predictor.from_path(path, pyramid=[(245, 245)])
    props = _check(_cudart().cudaGetDeviceProperties(0), "properties")
    data = _build_static_plan(path, (2, 3, 245, 245))
    (tmp_path / "p.plan").write_bytes(data)
    plan = PlanEntry("p.plan", hashlib.sha256(data).hexdigest(), "image", (2, 3, 245, 245), (2, 3, 245, 245), (2, 3, 245, 245))
    Manifest("model.onnx", sha256_file(path), reference.meta.to_props(), "fp32", trt.__version__, props.name.decode(),
             f"{props.major}.{props.minor}", {}, (plan,)).save(tmp_path / "manifest.json")
    engines = Predictor.from_path(tmp_path / "manifest.json", pyramid=[(245, 245)])
    image = np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8)
    got, expected = engines.dense(image)[0].outputs, reference.dense(image)[0].outputs
    for name in expected:
        assert np.abs(got[name] - expected[name]).max() <= 1e-3 * np.abs(expected[name]).max()
