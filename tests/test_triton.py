"""Serving on Triton Inference Server: generated repositories, against a real tritonserver.

The server is PyTriton's bundled ``tritonserver`` from the environment ``$OVERFEAT_TRITON_ENV``
(``make test`` makes ``.venv-triton``), on 127.0.0.1 and free ports, stopped by the PID of the
session it runs in. Its Python backend runs the repository's models with that environment's
Python (NumPy 1.26, which the backend needs); the tests compare its answers with a Predictor in
that same environment (bit for bit) and with one in this process (NumPy 2: equal labels and
order, floats equal to 1e-9).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from overfeat.errors import BackendError, InputError, ModelError
from tests.conftest import cli, needs_export

pytestmark = needs_export
tritonclient = pytest.importorskip("tritonclient.http", reason="needs the 'triton' extra (tritonclient)")
TASKS = ("classify", "localize", "detect")


def _server_reason() -> str | None:
    from overfeat.serving.server import find_triton

    try:
        find_triton()
    except InputError as exc:
        return str(exc)
    return None


needs_server = pytest.mark.skipif(_server_reason() is not None, reason=f"no tritonserver here: {_server_reason()}")


@pytest.fixture(scope="module")
def image():
    from overfeat.datasets.shapes import generate

    return generate(11, "multi", "test", 3).image


@pytest.fixture(scope="module")
def server(shapes_onnx, tmp_path_factory):
    """The shapes model's repository (network in the Python backend, pyramid of 2 scales), served."""
    from overfeat.serving.repository import RepoOptions, write_repository
    from overfeat.serving.server import Server

    if _server_reason():
        pytest.skip(_server_reason())
    work = tmp_path_factory.mktemp("triton")
    options = RepoOptions(net="python", pyramid=2, task="detect", max_pixels=300_000)
    repository = write_repository(shapes_onnx, work / "repository", options)
    with Server(repository.path, work) as running:
        yield running


def _pipeline(url: str, image: np.ndarray, protocol: str = "http", **parameters):
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    client = module.InferenceServerClient(url)
    tensor = module.InferInput("IMAGE", list(image.shape), "UINT8" if image.dtype == np.uint8 else "FP32")
    tensor.set_data_from_numpy(image)
    result = client.infer("overfeat", [tensor], parameters=parameters or None)
    return json.loads(result.as_numpy("RESULT")[0]), result


def _same(a: dict, b: dict) -> bool:
    return a["classes"] == b["classes"] and a["boxes"] == b["boxes"]


def _close(a: dict, b: dict) -> bool:
    """Equal labels, names, members and order; scores and boxes equal to 1e-9 (relative)."""
    for key in ("classes", "boxes"):
        if len(a[key]) != len(b[key]):
            return False
        for x, y in zip(a[key], b[key], strict=True):
            if x["label"] != y["label"] or x.get("members") != y.get("members"):
                return False
            if not np.allclose(x["score"], y["score"], rtol=1e-9, atol=0) or not np.allclose(
                x.get("box", 0), y.get("box", 0), rtol=1e-9, atol=1e-9
            ):
                return False
    return True


def _in_triton_env(model: Path, image: np.ndarray, tmp_path: Path) -> dict:
    """The local Predictor's results in the server's environment (its NumPy, its kernels)."""
    np.save(tmp_path / "image.npy", image)
    script = (
        "import json, sys, numpy as np\n"
        "from overfeat.runtime import Predictor\n"
        f"p = Predictor.from_path({str(model)!r}, pyramid=2)\n"
        f"image = np.load({str(tmp_path / 'image.npy')!r})\n"
        f"print(json.dumps({{t: p.predict(image, (t,))[t].to_dict() for t in {TASKS!r}}}))\n"
    )
    from overfeat.serving.server import find_triton

    python = find_triton().env_bin / "python"
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


# ------------------------------------------------------------------- repositories


def test_configs_parse_and_carry_the_metadata(shapes_onnx, tmp_path):
    from overfeat.serving.repository import RepoOptions, plan_repository, write_repository

    for net in ("onnxruntime", "python"):
        repository = write_repository(shapes_onnx, tmp_path / net, RepoOptions(net=net, instances=2, max_batch=4))
        assert repository.checked and repository.networks == ("overfeat_net",)
        config = (tmp_path / net / "overfeat_net" / "config.pbtxt").read_text()
        assert 'parameters { key: "overfeat.arch" value { string_value: "\\"accurate\\"" } }' in config
        assert ("dynamic_batching" in config) == (net == "onnxruntime") and "count: 2" in config
        files = sorted(p.name for p in (tmp_path / net / "overfeat_net" / "1").iterdir())
        assert files == (["model.onnx"] if net == "onnxruntime" else ["model.onnx", "model.py"])
    models, net = plan_repository(shapes_onnx, RepoOptions(name="shapes"))
    assert [m.name for m in models] == ["shapes", "shapes_net"] and net == "onnxruntime"


def test_a_manifest_gives_tensorrt_plan_models(shapes_onnx, tmp_path):
    from overfeat.engines.build import build_engines
    from overfeat.engines.plan import BuildOptions, plan_build
    from overfeat.serving.repository import check_config, write_repository
    from tests.test_engines import StandIn

    build_engines(plan_build(shapes_onnx, BuildOptions(pyramid=2, orientations="landscape")), tmp_path / "engines", StandIn())
    repository = write_repository(tmp_path / "engines" / "manifest.json", tmp_path / "repo")
    assert repository.net == "tensorrt" and len(repository.networks) == 2 and repository.checked
    for name in repository.networks:
        config = (tmp_path / "repo" / name / "config.pbtxt").read_text()
        assert 'platform: "tensorrt_plan"' in config and 'cc_model_filenames [ { key: "8.6" value: "model.plan" } ]' in config
        assert check_config(config, name) and (tmp_path / "repo" / name / "1" / "model.plan").is_file()
    line = next(x for x in (tmp_path / "repo" / "overfeat" / "config.pbtxt").read_text().splitlines() if "overfeat_routes" in x)
    routes = json.loads(json.loads(line.split("string_value: ", 1)[1].rsplit(" } }", 1)[0]))
    assert sorted(routes.values()) == sorted(repository.networks)


def test_bad_repository_requests_are_refused(shapes_onnx, tmp_path):
    from overfeat.serving.repository import RepoOptions, check_config, write_repository

    for bad in (dict(name="a/b"), dict(instances=0), dict(max_batch=1000), dict(net="tensorflow")):
        with pytest.raises(InputError):
            RepoOptions(**bad)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not a repository overfeat wrote"):
        write_repository(shapes_onnx, tmp_path / "mine")
    with pytest.raises(InputError, match="TensorRT plans come from an engine manifest"):
        write_repository(shapes_onnx, tmp_path / "r", RepoOptions(net="tensorrt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    write_repository(shapes_onnx, tmp_path / "r", RepoOptions(net="python"))  # a repository it wrote is replaced whole
    write_repository(shapes_onnx, tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r" / "overfeat_net" / "1").iterdir()) == ["model.onnx"]
    (tmp_path / "r" / "someone_else").mkdir()  # but not once it holds models of others
    with pytest.raises(InputError, match="holds more than it wrote"):
        write_repository(shapes_onnx, tmp_path / "r")
    with pytest.raises(InputError, match="batch of 2"):
        RepoOptions(max_batch=1)
    from overfeat.errors import BuildError

    with pytest.raises(BuildError, match="is not a Triton ModelConfig"):
        check_config('name: "x"\nbackend: "python"\nmax_batch_sise: 0\n', "x")


# ------------------------------------------------------------------- a real server


@needs_server
def test_the_pipeline_answers_as_the_runtime_does(server, shapes_onnx, image, tmp_path):
    from overfeat.runtime import Predictor

    there = _in_triton_env(shapes_onnx, image, tmp_path)
    here = Predictor.from_path(shapes_onnx, pyramid=2)
    for task in TASKS:
        for url, protocol in ((server.http_url, "http"), (server.grpc_url, "grpc")):
            answer, result = _pipeline(url, image, protocol, task=task)
            assert _same(answer, there[task]), (task, protocol)  # the server's own environment: bit for bit
            assert _close(answer, here.predict(image, (task,))[task].to_dict()), (task, protocol)
            items = answer["boxes"] or answer["classes"]
            assert result.as_numpy("LABELS").tolist() == [i["label"] for i in items]
            assert result.as_numpy("BOXES").shape == (len(answer["boxes"]), 4)


@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_client_backend_equals_the_local_predictor(server, shapes_onnx, image, protocol):
    """The pyramid and the merge here, the network there: identical results."""
    from overfeat.runtime import Predictor

    here = Predictor.from_path(shapes_onnx, pyramid=2)
    url = server.http_url if protocol == "http" else server.grpc_url
    with Predictor.from_url(url, protocol=protocol, pyramid=2) as remote:
        assert remote.meta == here.meta
        for task in TASKS:
            assert _same(remote.predict(image, (task,))[task].to_dict(), here.predict(image, (task,))[task].to_dict())


@needs_server
def test_infer_through_triton_prints_what_local_infer_prints(server, shapes_onnx, image, tmp_path, capsys):
    from overfeat.datasets.png import encode_png

    path = tmp_path / "image.png"
    path.write_bytes(encode_png(image))
    assert cli("infer", path, "--model", shapes_onnx, "--pyramid 2 --task detect") == 0
    local = capsys.readouterr().out
    assert cli("infer", path, "--backend triton --url", server.http_url, "--model overfeat_net --pyramid 2 --task detect") == 0
    assert capsys.readouterr().out == local
    assert cli("infer", path, "--backend triton --model overfeat_net") == 2
    assert "--backend triton and --url (and --protocol) go together" in capsys.readouterr().err


@needs_server
def test_bad_requests_get_errors_and_the_server_keeps_serving(server, image):
    from tritonclient.utils import InferenceServerException

    bad = [
        (np.zeros((300, 300, 3), np.float32), "UINT8|data type|datatype"),
        (np.zeros((300, 300, 4), np.uint8), "expected an RGB image|dims|shape"),
        (np.zeros((600, 600, 3), np.uint8), "max_pixels|pixels"),  # over the repository's 300,000-pixel limit
    ]
    for array, message in bad:
        with pytest.raises(InferenceServerException, match=message):
            _pipeline(server.http_url, array)
    with pytest.raises(InferenceServerException, match="unknown request parameters"):
        _pipeline(server.http_url, image, task="detect", colour="red")
    with pytest.raises(InferenceServerException, match="within 0..1"):
        _pipeline(server.http_url, image, task="detect", score_threshold=7)
    # a client that goes away in the middle of a request
    with socket.create_connection(server.http_url.split(":")) as s:
        s.sendall(b'POST /v2/models/overfeat/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{"inputs": [')
    time.sleep(0.5)
    assert server.alive()
    answer, _ = _pipeline(server.http_url, image, task="classify")
    assert answer["classes"]


@needs_server
def test_client_errors_are_clear(server):
    from overfeat.runtime import Predictor
    from overfeat.serving.server import free_port

    with pytest.raises(BackendError, match="no Triton server answers"):
        Predictor.from_url(f"127.0.0.1:{free_port()}")
    with pytest.raises(ModelError, match="has no ready model 'nothing'"):
        Predictor.from_url(server.http_url, "nothing")
    with pytest.raises(ModelError, match="lacks the outputs"):
        Predictor.from_url(server.http_url, "overfeat")  # the pipeline, not a network
    with pytest.raises(InputError, match="expected HOST:PORT"):
        Predictor.from_url("localhost")


@needs_server
def test_the_pipeline_calls_the_network_through_bls(shapes_onnx, image, tmp_path):
    """With the network in another model (as onnxruntime_onnx or TensorRT plans are on a GPU
    server), the pipeline calls it through BLS: the same answers."""
    from overfeat.serving.repository import RepoOptions, write_repository
    from overfeat.serving.server import Server

    repository = write_repository(shapes_onnx, tmp_path / "repository", RepoOptions(net="python", pyramid=2))
    config = tmp_path / "repository" / "overfeat" / "config.pbtxt"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(x for x in lines if "overfeat_local_model" not in x))  # as for any other network
    there = _in_triton_env(shapes_onnx, image, tmp_path)
    with Server(repository.path, tmp_path) as server:
        for task in TASKS:
            answer, _ = _pipeline(server.grpc_url, image, "grpc", task=task)
            assert _same(answer, there[task]), task
