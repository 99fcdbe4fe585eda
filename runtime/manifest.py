"""``manifest.json``: what a directory of TensorRT plans holds and what they were built for.

Plain Python (no TensorRT): the runtime's TensorRT backend reads it and refuses plans that do
not match this machine *before* deserializing them, and tests exercise every check on the CPU.

Schema (format_version 1)::

    {"format_version": 1,
     "onnx": {"file": "model.onnx", "sha256": "...", "metadata": {"overfeat.arch": "...", ...}},
     "precision": "fp32" | "fp16" | "int8",
     "tensorrt_version": "10.13.3.9",
     "gpu": {"name": "NVIDIA A10", "compute_capability": "8.6"},
     "build": {"version_compatible": false, "hardware_compatibility": "none", ...},
     "plans": [{"file": "scale_245x245.plan", "sha256": "...",
                "input": {"name": "image", "min": [2, 3, 245, 245], "opt": [...], "max": [...]},
                "outputs": {"scores": [2, 1000, 3, 3], ...}}, ...]}

A static plan has min = opt = max.

A manifest is untrusted input: :meth:`Manifest.load` reads at most ``MAX_MANIFEST_BYTES`` and
checks the type and size of every field before anything uses it. A plan's ``file`` is a plain
file name in the manifest's directory (:func:`plan_path` also refuses a symbolic link that
leads out of it). Version-compatible plans embed host code that TensorRT runs when it loads
them; :func:`host_code_allowed` refuses them unless the caller allows it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from overfeat.errors import BackendError, InputError, ModelError
from overfeat.fileio import sha256_file, write_json
from overfeat.metadata import PRECISIONS, ModelMeta

FORMAT_VERSION = 1
HARDWARE_LEVELS = ("none", "ampere+", "same-compute-capability")
ORIENTATIONS = ("both", "landscape")
MAX_OPT_LEVEL = 5
# Bounds of what a manifest may say (it is read from a directory someone handed over: untrusted).
MAX_MANIFEST_BYTES = 16 * 1024**2
MAX_PLANS = 1024
MAX_DIM = 65536  # a batch, height or width of a plan's input or output
MAX_OUTPUTS = 64
MAX_RANK = 8  # dimensions of an output
MAX_NAME = 255  # characters of a file name, tensor name or metadata key
MAX_TEXT = 4096  # characters of a path, version, GPU name or other text
MAX_METADATA = 1024**2  # characters of a metadata value (the class names of a large model)
MAX_METADATA_KEYS = 256
MAX_WORKSPACE = 1024**5  # bytes (1 PiB)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"\d+(\.\d+)*[0-9A-Za-z.+_-]*")
_CAPABILITY = re.compile(r"\d+\.\d+")
_DYNAMIC = re.compile(r"\d+x\d+:\d+x\d+:\d+x\d+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class PlanEntry:
    file: str
    sha256: str
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    outputs: Mapping[str, tuple[int | str, ...]] = field(default_factory=dict)

    @property
    def static(self) -> bool:
        return self.min_shape == self.max_shape

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min_shape) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min_shape, shape, self.max_shape, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "input": {
                "name": self.input_name,
                "min": list(self.min_shape),
                "opt": list(self.opt_shape),
                "max": list(self.max_shape),
            },
            "outputs": {k: list(v) for k, v in self.outputs.items()},
        }


@dataclass(frozen=True)
class Manifest:
    onnx_file: str
    onnx_sha256: str
    metadata: Mapping[str, str]
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    build: Mapping[str, Any]
    plans: tuple[PlanEntry, ...]
    path: str = ""  # where it was read from (not serialised)

    @property
    def directory(self) -> Path:
        return Path(self.path).parent

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta.from_props(self.metadata, source=self.path or "manifest")

    def plan_for(self, shape: tuple[int, ...]) -> PlanEntry:
        """The plan that runs an input of ``shape`` (a static plan of that exact shape first)."""
        for plan in sorted(self.plans, key=lambda p: not p.static):
            if plan.accepts(tuple(shape)):
                return plan
        covered = ", ".join(_describe(p) for p in self.plans)
        raise BackendError(
            f"{self.path}: no engine for input {list(shape)}; the engines cover {covered}. Run with a pyramid the engines were built for, or rebuild with 'overfeat build --dynamic MIN:OPT:MAX'"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "onnx": {"file": self.onnx_file, "sha256": self.onnx_sha256, "metadata": dict(self.metadata)},
            "precision": self.precision,
            "tensorrt_version": self.tensorrt_version,
            "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability},
            "build": dict(self.build),
            "plans": [p.to_dict() for p in self.plans],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the manifest, after checking it as :meth:`load` will (nothing it would refuse is written)."""
        _parse(self.to_dict(), Path(path))
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read and check ``manifest.json``: at most ``MAX_MANIFEST_BYTES``, every field of the
        type and within the bounds of the schema; any other file is a :class:`ModelError`."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise ModelError(
                f"manifest {path} does not exist; a directory without manifest.json is an unfinished build"
            ) from None
        except OSError as exc:
            raise ModelError(f"manifest {path} cannot be read ({exc.strerror})") from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ModelError(
                f"manifest {path} is larger than {MAX_MANIFEST_BYTES // 1024**2} MiB; a manifest of overfeat build is a few KiB: rebuild the engines"
            )
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelError(f"manifest {path} is not valid JSON ({str(exc)[:120]})") from None
        return _parse(data, path)


class _Fields:
    """Checked reads of a manifest's JSON: a field that is missing, of another type or out of
    bounds is a :class:`ModelError` naming the manifest, the field and what is expected."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, name: str, value: Any, expected: str) -> NoReturn:
        raise ModelError(f"manifest {self.path}: {name} is {_shown(value)}, expected {expected}; rebuild the engines")

    def object(self, value: Any, name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(name, value, "an object")
        for key in required:
            if key not in value:
                field = key if name == "the top level" else f"{name}.{key}"
                raise ModelError(f"manifest {self.path} is missing or has a malformed field {field!r}; rebuild the engines")
        unknown = [key for key in value if key not in required + optional]
        if unknown:
            raise ModelError(
                f"manifest {self.path}: {name} has the unknown field {_shown(unknown[0])}, expected only {', '.join(required + optional)}; rebuild the engines"
            )
        return value

    def text(self, value: Any, name: str, limit: int = MAX_TEXT, pattern: re.Pattern | None = None, what: str = "") -> str:
        """A string of 1 to ``limit`` characters, no control characters, matching ``pattern`` (``what`` says what it is)."""
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= limit
            or _CONTROL.search(value)
            or (pattern is not None and not pattern.fullmatch(value))
        ):
            self.fail(name, value, what or f"text of 1 to {limit} characters without control characters")
        return value

    def integer(self, value: Any, name: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(name, value, f"an integer from {low} to {high}")
        return value

    def choice(self, value: Any, name: str, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(name, value, f"one of {', '.join(choices)}")
        return value

    def items(self, value: Any, name: str, low: int, high: int) -> list[Any]:
        if not isinstance(value, list) or not low <= len(value) <= high:
            self.fail(name, value, f"a list of {low} to {high} items")
        return value

    def mapping(self, value: Any, name: str, high: int) -> dict[str, Any]:
        """An object of any keys (names of at most MAX_NAME characters), at most ``high`` of them."""
        if not isinstance(value, dict) or len(value) > high:
            self.fail(name, value, f"an object of at most {high} fields")
        for key in value:
            self.text(key, f"a key of {name}", MAX_NAME)
        return value

    def shape(self, value: Any, name: str) -> tuple[int, ...]:
        """An input shape: [N, C, H, W], each from 1 to MAX_DIM."""
        dims = self.items(value, name, 4, 4)
        return tuple(self.integer(d, f"{name}[{i}]", 1, MAX_DIM) for i, d in enumerate(dims))


def _shown(value: Any) -> str:
    """A value for a one-line message: short, escaped, containers by their kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def plan_file_problem(name: Any) -> str | None:
    """Why ``name`` is not a plain file name in the engine directory, or None when it is."""
    if not isinstance(name, str) or not name:
        return "it is empty or not text"
    if os.path.isabs(name):
        return "it is an absolute path"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name in (".", ".."):
        return "it names a directory"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if _CONTROL.search(name):
        return "it holds control characters"
    return None


def _refuse_plan_file(source: str, value: Any, directory: Path) -> None:
    """A ModelError unless ``value`` is a plain file name (``source`` names the manifest and the entry)."""
    problem = plan_file_problem(value)
    if problem:
        raise ModelError(
            f"{source} {_shown(value)} is not a plain file name ({problem}); expected the name of a plan file in "
            f"{directory}, without / or \\, not . or ..; rebuild the engines"
        )


def _plan(fields: _Fields, value: Any, index: int) -> PlanEntry:
    name = f"plans[{index}]"
    p = fields.object(value, name, ("file", "sha256", "input"), ("outputs",))
    given = fields.object(p["input"], f"{name}.input", ("name", "min", "opt", "max"))
    low, opt, high = (fields.shape(given[k], f"{name}.input.{k}") for k in ("min", "opt", "max"))
    if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
        fields.fail(f"{name}.input", f"min {list(low)}, opt {list(opt)}, max {list(high)}", "min ≤ opt ≤ max in every dimension")
    outputs = fields.mapping(p.get("outputs", {}), f"{name}.outputs", MAX_OUTPUTS)
    _refuse_plan_file(f"manifest {fields.path}: {name}.file", p["file"], fields.path.parent)
    return PlanEntry(
        file=p["file"],
        sha256=fields.text(p["sha256"], f"{name}.sha256", 64, _SHA256, "a sha256 (lowercase hex)"),
        input_name=fields.text(given["name"], f"{name}.input.name", MAX_NAME),
        min_shape=low,
        opt_shape=opt,
        max_shape=high,
        outputs={k: _output(fields, v, f"{name}.outputs[{k!r}]") for k, v in outputs.items()},
    )


_SPAN = re.compile(r"\d{1,6}\.\.\d{1,6}")  # an output dimension that varies: "a..b"


def _output(fields: _Fields, value: Any, name: str) -> tuple[int | str, ...]:
    dims = fields.items(value, name, 1, MAX_RANK)
    return tuple(
        fields.text(d, f"{name}[{i}]", 13, _SPAN, "a size or a span a..b")
        if isinstance(d, str)
        else fields.integer(d, f"{name}[{i}]", 0, MAX_DIM)
        for i, d in enumerate(dims)
    )


def _build(fields: _Fields, value: Any) -> dict[str, Any]:
    """The recorded build options: each optional, each of its type (they are printed in rebuild commands)."""
    build = fields.object(value, "build", (), tuple(_BUILD))
    for key, item in build.items():
        _BUILD[key](fields, item, f"build.{key}")
    return dict(build)


def _pyramid(fields: _Fields, value: Any, name: str) -> None:
    if isinstance(value, str):
        fields.choice(value, name, ("paper", "aspect"))
    elif isinstance(value, list):
        for i, size in enumerate(fields.items(value, name, 1, MAX_PLANS)):
            for j, side in enumerate(fields.items(size, f"{name}[{i}]", 2, 2)):
                fields.integer(side, f"{name}[{i}][{j}]", 1, MAX_DIM)
    else:
        fields.integer(value, name, 1, MAX_PLANS)


def _optional(check):
    return lambda fields, value, name: None if value is None else check(fields, value, name)


def _flag(fields: _Fields, value: Any, name: str) -> None:
    if not isinstance(value, bool):
        fields.fail(name, value, "true or false")


_BUILD = {
    "pyramid": _pyramid,
    "batch": lambda f, v, n: f.integer(v, n, 1, MAX_DIM),
    "dynamic": _optional(lambda f, v, n: f.text(v, n, 64, _DYNAMIC, "MIN:OPT:MAX sizes HxW")),
    "orientations": lambda f, v, n: f.choice(v, n, ORIENTATIONS),
    "workspace": _optional(lambda f, v, n: f.integer(v, n, 1, MAX_WORKSPACE)),
    "opt_level": _optional(lambda f, v, n: f.integer(v, n, 0, MAX_OPT_LEVEL)),
    "hardware_compatibility": lambda f, v, n: f.choice(v, n, HARDWARE_LEVELS),
    "version_compatible": _flag,
    "timing_cache": _optional(lambda f, v, n: f.text(v, n)),
    "overfeat_version": lambda f, v, n: f.text(v, n, MAX_NAME),
    "built": lambda f, v, n: f.text(v, n, MAX_NAME),
}


def _metadata(fields: _Fields, value: Any) -> dict[str, str]:
    props = fields.mapping(value, "onnx.metadata", MAX_METADATA_KEYS)
    return {k: fields.text(v, f"onnx.metadata[{k!r}]", MAX_METADATA) for k, v in props.items()}


def _parse(data: Any, path: Path) -> Manifest:
    """The manifest of ``data`` (parsed JSON) read from ``path``, every field checked."""
    fields = _Fields(path)
    top = fields.object(
        data, "the top level", ("format_version", "onnx", "precision", "tensorrt_version", "gpu", "plans"), ("build",)
    )
    if top["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"manifest {path} has format_version {_shown(top['format_version'])}, this overfeat reads {FORMAT_VERSION}; rebuild the engines"
        )
    onnx = fields.object(top["onnx"], "onnx", ("file", "sha256", "metadata"))
    gpu = fields.object(top["gpu"], "gpu", ("name", "compute_capability"))
    entries = fields.items(top["plans"], "plans", 1, MAX_PLANS)
    plans = tuple(_plan(fields, p, i) for i, p in enumerate(entries))
    files = [p.file for p in plans]
    if len(set(files)) != len(files):
        fields.fail("plans", files, "each plan file listed once")
    manifest = Manifest(
        onnx_file=fields.text(onnx["file"], "onnx.file"),
        onnx_sha256=fields.text(onnx["sha256"], "onnx.sha256", 64, _SHA256, "a sha256 (lowercase hex)"),
        metadata=_metadata(fields, onnx["metadata"]),
        precision=fields.choice(top["precision"], "precision", PRECISIONS),
        tensorrt_version=fields.text(
            top["tensorrt_version"], "tensorrt_version", MAX_NAME, _VERSION, "a version such as 10.13.3.9"
        ),
        gpu_name=fields.text(gpu["name"], "gpu.name", MAX_NAME),
        compute_capability=fields.text(gpu["compute_capability"], "gpu.compute_capability", 16, _CAPABILITY, "MAJOR.MINOR"),
        build=_build(fields, top.get("build", {})),
        plans=plans,
        path=str(path),
    )
    ModelMeta.from_props(manifest.metadata, source=str(path))  # the metadata's own checks
    return manifest


def _describe(plan: PlanEntry) -> str:
    if plan.static:
        return "x".join(str(s) for s in plan.min_shape)
    return f"{'x'.join(map(str, plan.min_shape))}..{'x'.join(map(str, plan.max_shape))}"


def plan_path(manifest: Manifest, plan: PlanEntry) -> Path:
    """The file of ``plan``, symbolic links resolved: a plain file name in the manifest's
    directory that stays inside it; else a :class:`ModelError` naming the manifest and the plan."""
    directory = manifest.directory.resolve()
    _refuse_plan_file(f"manifest {manifest.path}: plan file", plan.file, directory)
    file = (directory / plan.file).resolve()
    if file == directory or not file.is_relative_to(directory):
        raise ModelError(
            f"manifest {manifest.path}: plan {plan.file} leads out of {directory} (to {file}); expected a plan file inside the engine directory: rebuild the engines"
        )
    return file


def verify_plans(manifest: Manifest) -> None:
    """Every plan file is a regular file inside the manifest's directory (:func:`plan_path`)
    and has the sha256 the manifest records."""
    for plan in manifest.plans:
        file = plan_path(manifest, plan)
        if not file.is_file():
            raise ModelError(
                f"{manifest.path}: plan {plan.file} is missing (or not a regular file); rebuild with {rebuild_command(manifest)}"
            )
        digest = sha256_file(file)
        if digest != plan.sha256:
            raise ModelError(
                f"{manifest.path}: plan {plan.file} has sha256 {digest[:12]}…, the manifest records {plan.sha256[:12]}…; the file changed since the build: rebuild with {rebuild_command(manifest)}"
            )


def host_code_allowed(manifest: Manifest, allow_host_code: bool = False) -> bool:
    """Whether TensorRT's runtime must allow host code for these plans (``engine_host_code_allowed``).

    Version-compatible plans (``build.version_compatible``) embed a lean TensorRT runtime: code
    that runs in this process when a plan is deserialized. They are loaded only when the caller
    asks, with ``allow_host_code=True`` (exactly True); otherwise they are refused, before any
    plan is read. Other plans need no host code: False, whatever the caller allows.
    """
    if not manifest.build.get("version_compatible"):
        return False
    if allow_host_code is not True:
        raise InputError(
            f"manifest {manifest.path}: the engines were built version-compatible, so each plan embeds TensorRT runtime code "
            "that runs in this process when it is loaded; if you trust whoever built them, pass `allow_host_code=True`, "
            "else rebuild them here without `version_compatible`"
        )
    return True


def check_compatible(manifest: Manifest, tensorrt_version: str, compute_capability: str, gpu_name: str = "this GPU") -> None:
    """Refuse plans built for another TensorRT version or GPU architecture.

    TensorRT loads a plan only with the exact version that built it (build number included),
    unless it was built version-compatible (then the same or a later version, of the same major
    or the next: 10.x plans load in 11.x); and only on the
    compute capability it was built for, unless built hardware-compatible ("ampere+": compute
    capability 8.0 or later).
    """
    built_for = f"TensorRT {manifest.tensorrt_version} on {manifest.gpu_name} (compute capability {manifest.compute_capability})"
    here = f"TensorRT {tensorrt_version} on {gpu_name} (compute capability {compute_capability})"
    here_v, built_v = _version(tensorrt_version), _version(manifest.tensorrt_version)
    if manifest.build.get("version_compatible"):  # the same or a later version, of the same major or the next
        version_ok = here_v >= built_v and 0 <= here_v[0] - built_v[0] <= 1
    else:  # the exact version, build number included
        version_ok = here_v[:4] == built_v[:4]
    level = manifest.build.get("hardware_compatibility", "none")
    if level == "ampere+":
        hardware_ok = _version(compute_capability) >= (8, 0)
    else:
        hardware_ok = _version(compute_capability)[:2] == _version(manifest.compute_capability)[:2]
    if not (version_ok and hardware_ok):
        raise BackendError(
            f"{manifest.path}: the engines were built for {built_for}; this machine has {here}. Rebuild them here: {rebuild_command(manifest)}"
        )


def rebuild_command(manifest: Manifest) -> str:
    """The ``overfeat build`` command that rebuilds these engines with the same options, each
    word shell-quoted (the values come from the manifest: untrusted)."""
    out = manifest.directory if manifest.path else Path("engines")
    return shlex.join(
        ["overfeat", "build", "--model", manifest.onnx_file, "--output", str(out), *build_arguments(manifest.build)]
    )


def build_arguments(build: Mapping[str, Any]) -> list[str]:
    """The command-line flags that reproduce the recorded build options (defaults left out)."""
    args: list[str] = []
    pyramid = build.get("pyramid", "paper")
    if pyramid != "paper":
        args += ["--pyramid", str(pyramid) if isinstance(pyramid, (str, int)) else ",".join(f"{h}x{w}" for h, w in pyramid)]
    if build.get("batch", 2) != 2:
        args += ["--batch", str(build["batch"])]
    if build.get("dynamic"):
        args += ["--dynamic", str(build["dynamic"])]
    if build.get("orientations", "both") != "both":
        args += ["--orientations", str(build["orientations"])]
    if build.get("workspace"):
        args += ["--workspace", f"{build['workspace']}B"]
    if build.get("opt_level") is not None:
        args += ["--opt-level", str(build["opt_level"])]
    if build.get("hardware_compatibility", "none") != "none":
        args += ["--hardware-compat", str(build["hardware_compatibility"])]
    if build.get("version_compatible"):
        args.append("--version-compatible")
    return args


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
