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
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overfeat.errors import BackendError, ModelError
from overfeat.fileio import sha256_file, write_json
from overfeat.metadata import ModelMeta

FORMAT_VERSION = 1


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
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(
                f"manifest {path} does not exist; a directory without manifest.json is an unfinished build"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"manifest {path} is not valid JSON ({exc})") from None
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise ModelError(
                    f"manifest {path} has format_version {data['format_version']}, this overfeat reads {FORMAT_VERSION}; rebuild the engines"
                )
            plans = tuple(
                PlanEntry(
                    file=p["file"],
                    sha256=p["sha256"],
                    input_name=p["input"]["name"],
                    min_shape=tuple(p["input"]["min"]),
                    opt_shape=tuple(p["input"]["opt"]),
                    max_shape=tuple(p["input"]["max"]),
                    outputs={k: tuple(v) for k, v in p.get("outputs", {}).items()},
                )
                for p in data["plans"]
            )
            manifest = cls(
                onnx_file=data["onnx"]["file"],
                onnx_sha256=data["onnx"]["sha256"],
                metadata=dict(data["onnx"]["metadata"]),
                precision=data["precision"],
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=data["gpu"]["name"],
                compute_capability=str(data["gpu"]["compute_capability"]),
                build=dict(data.get("build", {})),
                plans=plans,
                path=str(path),
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"manifest {path} is missing or has a malformed field {exc}; rebuild the engines") from None
        if not plans:
            raise ModelError(f"manifest {path} lists no plans")
        return manifest


def _describe(plan: PlanEntry) -> str:
    if plan.static:
        return "x".join(str(s) for s in plan.min_shape)
    return f"{'x'.join(map(str, plan.min_shape))}..{'x'.join(map(str, plan.max_shape))}"


def verify_plans(manifest: Manifest) -> None:
    """Every plan file exists and has the sha256 the manifest records."""
    for plan in manifest.plans:
        file = manifest.directory / plan.file
        if not file.is_file():
            raise ModelError(f"{manifest.path}: plan {plan.file} is missing; rebuild with {rebuild_command(manifest)}")
        digest = sha256_file(file)
        if digest != plan.sha256:
            raise ModelError(
                f"{manifest.path}: plan {plan.file} has sha256 {digest[:12]}…, the manifest records {plan.sha256[:12]}…; the file changed since the build: rebuild with {rebuild_command(manifest)}"
            )


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
    """The ``overfeat build`` command that rebuilds these engines with the same options."""
    out = manifest.directory if manifest.path else Path("engines")
    return " ".join(
        [
            "overfeat build --model",
            shlex.quote(manifest.onnx_file),
            "--output",
            shlex.quote(str(out)),
            *build_arguments(manifest.build),
        ]
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
