"""A Triton model repository for an overfeat model, made whole or not at all.

Layout (``NAME`` is ``RepoOptions.name``, ``overfeat`` by default)::

    REPO/
      README.md                  how to serve it
      NAME/                      the pipeline: Python backend, image in, results out
        config.pbtxt
        1/model.py               overfeat.runtime's pyramid, decoding and greedy merge;
                                 the network through Business Logic Scripting (BLS)
      NAME_net/                  the network (one model), or NAME_net_HxW per TensorRT plan
        config.pbtxt
        1/model.onnx | model.plan | model.py + model.onnx

The network model is ``onnxruntime_onnx`` for an ONNX file (dims ``[3, -1, -1]`` with a batch
axis up to ``max_batch`` and dynamic batching), ``tensorrt_plan`` models for an engine manifest
(one per plan, shapes from the manifest, ``cc_model_filenames`` from its compute capability), or
``python``: ONNX Runtime inside the Python backend, for servers without the ONNX Runtime backend.
The model's ``overfeat.*`` metadata travels in each network config's ``parameters``, so a client
(:mod:`overfeat.runtime.backends.triton`) knows the model it talks to.

Every ``config.pbtxt`` is text made here; where ``tritonclient`` is installed it is parsed with
Triton's ``ModelConfig`` protobuf before anything is written (a misspelt field fails there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overfeat.errors import BuildError, InputError
from overfeat.fileio import check_output_path, work_dir
from overfeat.metadata import INPUT_NAME, ModelMeta
from overfeat.runtime.image import DEFAULT_MAX_PIXELS

NETS = ("onnxruntime", "tensorrt", "python")
MAX_INSTANCES = 64
MAX_BATCH = 64
MARKER = ".overfeat-repository"  # names a folder this module made, which a new repository may replace
MODELS = Path(__file__).resolve().parent / "models"  # the Python-backend model sources
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# the pipeline's tensors: an image in; the results as the runtime's JSON and as arrays
PIPELINE_INPUT = "IMAGE"
PIPELINE_OUTPUTS = {
    "RESULT": ("TYPE_STRING", "[ 1 ]"),
    "LABELS": ("TYPE_INT32", "[ -1 ]"),
    "SCORES": ("TYPE_FP32", "[ -1 ]"),
    "BOXES": ("TYPE_FP32", "[ -1, 4 ]"),
}


@dataclass(frozen=True)
class RepoOptions:
    """What the repository serves and how.

    name: the pipeline model's name (the network is NAME_net); net: the network model's backend
    (None: onnxruntime for an ONNX file, tensorrt for a manifest); task: the pipeline's task when a
    request names none (None: the model's first); instances: model instances of each model;
    max_batch: the network's largest batch (dynamic batching joins requests up to it); pyramid,
    flip: the pipeline's scales; max_pixels: the largest image the pipeline takes.
    """

    name: str = "overfeat"
    net: str | None = None
    task: str | None = None
    instances: int = 1
    max_batch: int = 8
    pyramid: Any = "paper"
    flip: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS  # the pipeline refuses larger images

    def __post_init__(self) -> None:
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise InputError(f"`max_pixels` {self.max_pixels!r}: expected a positive number of pixels")
        if not _NAME.fullmatch(self.name):
            raise InputError(f"`name` {self.name!r}: expected 1 to 64 letters, digits, '_', '.' or '-'")
        if self.net is not None and self.net not in NETS:
            raise InputError(f"`net` {self.net!r}: expected one of {', '.join(NETS)}")
        if self.flip and self.max_batch < 2:
            raise InputError(
                f"`max_batch` {self.max_batch}: each scale runs as a batch of 2 (the image and its mirror); give 2 or more, or flip=False"
            )
        for key, most in (("instances", MAX_INSTANCES), ("max_batch", MAX_BATCH)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise InputError(f"`{key}` {value!r}: expected 1 to {most}")


@dataclass
class ModelDir:
    """One model of the repository: its config and the files of its version 1."""

    name: str
    config: str
    files: dict[str, Path] = field(default_factory=dict)  # name in 1/ → the file copied there


@dataclass
class Repository:
    path: str
    pipeline: str
    networks: tuple[str, ...]
    net: str
    checked: bool  # the configs were parsed by Triton's ModelConfig protobuf

    def table(self) -> str:
        lines = [f"repository {self.path}", f"pipeline   {self.pipeline}  (python backend: pyramid, decoding, merge)"]
        lines += [f"network    {n}  ({self.net})" for n in self.networks]
        lines.append(
            "configs    "
            + ("parsed by tritonclient's ModelConfig" if self.checked else "not parsed (tritonclient is not installed)")
        )
        return "\n".join(lines)


def _text(value: str) -> str:
    return json.dumps(value)  # a protobuf text-format string literal: JSON's escapes are a subset it reads


def _parameters(values: dict[str, str]) -> str:
    return "".join(f"parameters {{ key: {_text(k)} value {{ string_value: {_text(v)} }} }}\n" for k, v in values.items())


def _tensor(name: str, dtype: str, dims: str) -> str:
    return f"{{ name: {_text(name)} data_type: {dtype} dims: {dims} }}"


def _instances(count: int, kind: str) -> str:
    return f"instance_group [ {{ count: {count} kind: {kind} }} ]\n"


def _source(model: str | os.PathLike[str]) -> tuple[str, ModelMeta, Any]:
    """The kind of ``model`` (onnx or manifest), its metadata, and the manifest (or None)."""
    from overfeat.runtime.backends import model_kind

    kind = model_kind(model)
    if kind == "manifest":
        from overfeat.runtime.manifest import Manifest

        manifest = Manifest.load(model)
        return kind, manifest.meta, manifest
    if kind != "onnx":
        raise InputError(f"`model` {model}: a Triton repository is made from an ONNX file or an engine manifest")
    from overfeat.runtime.backends.onnxruntime import session

    props = dict(session(model).get_modelmeta().custom_metadata_map)
    return kind, ModelMeta.from_props(props, str(model)), None


def _network_onnx(name: str, model: Path, meta: ModelMeta, options: RepoOptions, props: dict[str, str]) -> ModelDir:
    channels = meta.output_channels()
    outputs = ", ".join(_tensor(n, "TYPE_FP32", f"[ {c}, -1, -1 ]") for n, c in channels.items())
    config = (
        f'name: {_text(name)}\nbackend: "onnxruntime"\nmax_batch_size: {options.max_batch}\n'
        f"input [ {_tensor(INPUT_NAME, 'TYPE_FP32', '[ 3, -1, -1 ]')} ]\noutput [ {outputs} ]\n"
        f"{_instances(options.instances, 'KIND_CPU')}dynamic_batching {{ max_queue_delay_microseconds: 200 }}\n"
        f"{_parameters(props)}"
    )
    return ModelDir(name, config, {"model.onnx": model})


def _network_python(name: str, model: Path, meta: ModelMeta, options: RepoOptions, props: dict[str, str]) -> ModelDir:
    outputs = ", ".join(_tensor(n, "TYPE_FP32", f"[ -1, {c}, -1, -1 ]") for n, c in meta.output_channels().items())
    config = (
        f'name: {_text(name)}\nbackend: "python"\nmax_batch_size: 0\n'
        f"input [ {_tensor(INPUT_NAME, 'TYPE_FP32', '[ -1, 3, -1, -1 ]')} ]\noutput [ {outputs} ]\n"
        f"{_instances(options.instances, 'KIND_CPU')}{_parameters(props)}"
    )
    return ModelDir(name, config, {"model.py": MODELS / "network.py", "model.onnx": model})


def _networks_tensorrt(base: str, manifest, options: RepoOptions, props: dict[str, str]) -> tuple[list[ModelDir], dict[str, str]]:
    """One tensorrt_plan model per plan; the pipeline's routing table ``HxW`` (or ``*``) → model."""
    from overfeat.runtime.manifest import plan_path, verify_plans

    verify_plans(manifest)  # each plan file the manifest's, before it is copied
    dynamic = [p for p in manifest.plans if not p.static]
    if len(dynamic) > 1 or (dynamic and len(manifest.plans) > 1):
        raise InputError(
            f"`model` {manifest.path}: a repository takes static plans or one dynamic plan; this manifest has {len(dynamic)} dynamic of {len(manifest.plans)}"
        )
    models, routes = [], {}
    for plan in manifest.plans:
        n, _, h, w = plan.opt_shape
        name = base if len(manifest.plans) == 1 else f"{base}_b{n}_{h}x{w}"
        if any(m.name == name for m in models):
            raise InputError(f"`model` {manifest.path}: two plans of shape {list(plan.opt_shape)}; rebuild the engines")
        dims = "[ " + ", ".join(str(d) if plan.static else "-1" for d in plan.opt_shape) + " ]"
        outputs = ", ".join(
            _tensor(o, "TYPE_FP32", "[ " + ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape) + " ]")
            for o, shape in plan.outputs.items()
        )
        config = (
            f'name: {_text(name)}\nplatform: "tensorrt_plan"\nmax_batch_size: 0\n'
            f"input [ {_tensor(plan.input_name, 'TYPE_FP32', dims)} ]\noutput [ {outputs} ]\n"
            f'cc_model_filenames [ {{ key: {_text(manifest.compute_capability)} value: "model.plan" }} ]\n'
            f"{_instances(options.instances, 'KIND_GPU')}{_parameters(props)}"
        )
        models.append(ModelDir(name, config, {"model.plan": plan_path(manifest, plan)}))
        routes[f"{h}x{w}" if plan.static else "*"] = name
    return models, routes


def _pipeline(
    options: RepoOptions, meta: ModelMeta, routes: dict[str, str], props: dict[str, str], local: str | None = None
) -> ModelDir:
    from overfeat.runtime.tasks import default_tasks

    task = options.task or default_tasks(meta)[0]
    outputs = ", ".join(_tensor(n, dtype, dims) for n, (dtype, dims) in PIPELINE_OUTPUTS.items())
    settings = {
        "overfeat_routes": json.dumps(routes),
        "overfeat_task": task,
        "overfeat_pyramid": json.dumps(options.pyramid),
        "overfeat_flip": json.dumps(options.flip),
        "overfeat_max_pixels": str(options.max_pixels),
        # --net python: the pipeline runs the network model's ONNX file itself (no BLS round trip per scale)
        **({"overfeat_local_model": local} if local else {}),
    }
    config = (
        f'name: {_text(options.name)}\nbackend: "python"\nmax_batch_size: 0\n'
        f"input [ {_tensor(PIPELINE_INPUT, 'TYPE_UINT8', '[ -1, -1, 3 ]')} ]\noutput [ {outputs} ]\n"
        f"{_instances(options.instances, 'KIND_CPU')}{_parameters({**settings, **props})}"
    )
    return ModelDir(options.name, config, {"model.py": MODELS / "pipeline.py"})


def check_config(text: str, where: str) -> bool:
    """Parse ``text`` with Triton's ModelConfig protobuf (tritonclient); False when it is not
    installed. A config it refuses is a BuildError: this module made it wrong."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return False
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise BuildError(f"the config of {where} is not a Triton ModelConfig: {exc}") from None
    return True


def plan_repository(model: str | os.PathLike[str], options: RepoOptions | None = None) -> tuple[list[ModelDir], str]:
    """The models of the repository for ``model`` (nothing written) and the network's backend."""
    options = options or RepoOptions()
    kind, meta, manifest = _source(model)
    if options.task is not None:
        from overfeat.runtime.tasks import check_tasks

        check_tasks((options.task,), meta, str(model))
    from overfeat.runtime.pyramid import pyramid_sizes

    pyramid_sizes(options.pyramid, meta, (meta.window, meta.window + 1))  # a pyramid the model takes
    net = options.net or ("tensorrt" if kind == "manifest" else "onnxruntime")
    if (net == "tensorrt") != (kind == "manifest"):
        raise InputError(
            f"`net` {net}: TensorRT plans come from an engine manifest, the other networks from an ONNX file; {model} is {kind}"
        )
    props = meta.to_props()
    base = f"{options.name}_net"
    if net == "tensorrt":
        networks, routes = _networks_tensorrt(base, manifest, options, props)
    else:
        make = _network_onnx if net == "onnxruntime" else _network_python
        networks, routes = [make(base, Path(model), meta, options, props)], {"*": base}
    local = f"../{base}/1/model.onnx" if net == "python" else None  # relative to the pipeline model folder
    return [_pipeline(options, meta, routes, props, local), *networks], net


def _readme(models: list[ModelDir], net: str) -> str:
    gpu = net == "tensorrt"
    return f"""# Triton model repository made by overfeat

Models: {", ".join(f"`{m.name}`" for m in models)}. `{models[0].name}` takes an RGB image (`IMAGE`, UINT8 [H, W, 3]) and
returns the results (`RESULT`: the runtime's JSON; `LABELS`, `SCORES`, `BOXES`); request parameters
`task`, `top_k`, `min_score`, `score_threshold`, `method`, `iou_threshold` choose the decoding.
The other models are the network ({net}); `overfeat infer --backend triton --url HOST:PORT --model NAME_net`
runs the pyramid and the merge on the client instead.

The pipeline needs the runtime in the server's Python: `pip install 'overfeat[ort]'` (NumPy < 2 for
the Python backend of Triton 2.51).

Serve it (NGC container; loopback only, change the addresses to publish it):

    docker run --rm {"--gpus all " if gpu else ""}-p127.0.0.1:8000:8000 -p127.0.0.1:8001:8001 -v $PWD:/models \\
        nvcr.io/nvidia/tritonserver:24.10-py3 \\
        sh -c "pip install 'overfeat[ort]' 'numpy<2' && tritonserver --model-repository /models --allow-metrics=false"

or on this machine: `overfeat serve --model MODEL` (a repository in a temporary folder, the bundled server).
"""


def _ours(folder: Path) -> bool:
    """Whether ``folder`` is a repository this module wrote and holds nothing else."""
    try:
        recorded = json.loads((folder / MARKER).read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(recorded, list) and {p.name for p in folder.iterdir()} <= {*map(str, recorded), MARKER}


def write_repository(
    model: str | os.PathLike[str], output: str | os.PathLike[str], options: RepoOptions | None = None
) -> Repository:
    """Write the repository for ``model`` into ``output``, whole or not at all. ``output`` must not
    exist, or be a repository this function wrote (it is replaced)."""
    options = options or RepoOptions()
    out = Path(output)
    if out.exists() and not (out.is_dir() and (_ours(out) or not any(out.iterdir()))):
        raise InputError(
            f"`output` {out} exists and is not a repository overfeat wrote, or holds more than it wrote: give a new folder"
        )
    check_output_path(out / MARKER, "`output`")
    models, net = plan_repository(model, options)
    checked = all([check_config(m.config, m.name) for m in models])
    out.parent.mkdir(parents=True, exist_ok=True)
    with work_dir("repository", out.parent) as tmp:
        for m in models:
            folder = tmp / m.name / "1"
            folder.mkdir(parents=True)
            (tmp / m.name / "config.pbtxt").write_text(m.config, encoding="utf-8")
            for name, source in m.files.items():
                shutil.copyfile(source, folder / name)
        (tmp / "README.md").write_text(_readme(models, net), encoding="utf-8")
        entries = sorted([*(m.name for m in models), "README.md"])
        (tmp / MARKER).write_text(json.dumps({"model": str(model), "net": net, "entries": entries}) + "\n", encoding="utf-8")
        staged = tmp / "repository"
        staged.mkdir()
        for entry in list(tmp.iterdir()):
            if entry != staged:
                entry.rename(staged / entry.name)
        if out.exists():
            old = tmp / "old"
            out.rename(old)
            try:
                staged.rename(out)
            except BaseException:  # an error or an interrupt between the renames: the old one back
                old.rename(out)
                raise
        else:
            staged.rename(out)
    return Repository(str(out), options.name, tuple(m.name for m in models[1:]), net, checked)
