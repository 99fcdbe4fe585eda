"""``overfeat build``: run a :class:`~overfeat.engines.plan.BuildPlan` and write the directory.

The directory holds raw TensorRT plans (``trtexec --loadEngine`` and ``polygraphy run`` load
them as they are), the timing cache and ``manifest.json``. The order of writes keeps it
honest at every moment:

- each plan is built in memory and written to a temporary name, then renamed into place: a
  plan of a previous build is replaced only by one that was built successfully;
- just before the first plan of a previous build is replaced, that build's manifest is
  removed (it no longer describes the directory); if the new build fails before that point,
  the previous build is left whole;
- ``manifest.json`` is written last, atomically: a directory without one is an unfinished
  build, and the runtime refuses it;
- plans the previous manifest listed, or with the names this module gives plans, that the new one
  does not list are removed after it is written (a failed build's leftovers included).

The compiler is anything with the :class:`Compiler` shape; :class:`overfeat.engines.compiler.
TensorRTCompiler` is the real one, and the tests use a stand-in (TensorRT cannot run on CPUs).
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from overfeat import __version__
from overfeat.errors import InputError, OverfeatError
from overfeat.fileio import atomic_path, check_output_path, sha256_file
from overfeat.progress import Progress
from overfeat.runtime.manifest import Manifest, PlanEntry

from .plan import BuildPlan, EngineSpec

MANIFEST = "manifest.json"
PLAN_NAME = re.compile(r"(scale_\d+x\d+_b\d+|dynamic_\d+x\d+-\d+x\d+_b1-\d+)\.plan")  # the names plan.py gives
TIMING_CACHE = "timing.cache"


class Compiler(Protocol):
    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def build(self, spec: EngineSpec) -> bytes:
        """The serialized plan for ``spec``; raises :class:`~overfeat.errors.BuildError`."""
        ...

    def timing_cache(self) -> bytes | None:
        """The timing cache as it stands (shared by every build of this compiler)."""
        ...


def check_output_dir(output: str | os.PathLike[str], create: bool = True) -> Path:
    """Create the output directory (and its parents) or refuse a path that cannot be one;
    ``create=False`` (a dry run) only refuses."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"`output` {out} is a file, expected a directory for the plans and manifest.json")
    if not create:
        check_output_path(out / MANIFEST, "`output`")
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"`output` {out}: cannot create the directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"`output` {out} is not writable")
    return out


def timing_cache_path(plan: BuildPlan, output: str | os.PathLike[str]) -> Path:
    return Path(plan.options.timing_cache) if plan.options.timing_cache else Path(output) / TIMING_CACHE


def build_engines(
    plan: BuildPlan, output: str | os.PathLike[str], compiler: Compiler, progress: Progress | None = None
) -> Manifest:
    """Build every engine of ``plan`` into ``output``; return the manifest written last."""
    progress = progress or Progress(enabled=False)
    out = check_output_dir(output)
    previous = _previous(out / MANIFEST)  # plan files of the build already there, or None
    replaced = previous or []
    onnx_sha = sha256_file(plan.onnx)
    cache = check_output_path(timing_cache_path(plan, out), "`timing_cache`")  # before anything is replaced
    entries = []
    for number, spec in enumerate(plan.engines, 1):
        with progress.step(f"building {spec.label} ({number}/{len(plan.engines)}, {plan.precision})"):
            data = compiler.build(spec)
        if previous is not None:
            (out / MANIFEST).unlink(missing_ok=True)  # the old build stops being whole here
            previous = None
        with atomic_path(out / spec.file) as tmp:
            tmp.write_bytes(data)
        entries.append(
            PlanEntry(
                spec.file,
                hashlib.sha256(data).hexdigest(),
                plan.input_name,
                spec.min_shape,
                spec.opt_shape,
                spec.max_shape,
                spec.outputs,
            )
        )
        _save_cache(compiler, cache)  # after every plan: a failed later scale keeps the tactics timed so far
    build = {
        **plan.options.to_dict(),
        "timing_cache": str(cache),
        "overfeat_version": __version__,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest = Manifest(
        plan.onnx,
        onnx_sha,
        plan.meta.to_props(),
        plan.precision,
        compiler.tensorrt_version,
        compiler.gpu_name,
        compiler.compute_capability,
        build,
        tuple(entries),
        str(out / MANIFEST),
    )
    manifest.save(out / MANIFEST)
    kept = {e.file for e in entries}
    # plans of the previous build, and plans a failed build left behind (its manifest was gone)
    stale = {name for name in replaced if Path(name).name == name} | {
        p.name for p in out.glob("*.plan") if PLAN_NAME.fullmatch(p.name)
    }
    for name in sorted(stale - kept):
        if (out / name).is_file():
            (out / name).unlink()
    return manifest


def _previous(path: Path) -> list[str] | None:
    """The plan files of the build already in the directory (None when there is none)."""
    if not path.is_file():
        return None
    try:
        return [p.file for p in Manifest.load(path).plans]
    except OverfeatError:
        return []  # an unreadable manifest describes nothing; it is replaced all the same


def _save_cache(compiler: Compiler, path: Path) -> None:
    data = compiler.timing_cache()
    if data:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
