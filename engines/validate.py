"""``overfeat validate``: candidates against a reference on the same inputs, for CI pipelines.

Every model runs through Polygraphy's ``Comparator``: ONNX files in Polygraphy's ONNX Runtime
runner, PyTorch checkpoints and TensorRT engine manifests in :class:`overfeat.engines.runners.
BackendRunner`. The inputs are the runtime's own batches (each image at every pyramid scale,
with its mirror), so what is checked is what ``overfeat infer`` runs.

Two levels are judged per candidate:

- **raw outputs**, by Polygraphy's simple comparison with the tolerance of the candidate's
  precision (:data:`DEFAULT_TOLERANCES`). ``atol`` is given as a fraction of the reference
  output's largest magnitude over the run, so one tolerance fits every model and output;
  Polygraphy receives it in absolute units, per output. ``elemwise`` fails when any element
  exceeds both tolerances; ``mean`` when the mean errors exceed both.
  The error statistics reported are :mod:`overfeat.runtime.compare`'s, as the precision gate's.
- **task agreement**, from the same outputs decoded by the runtime: top-1 agreement and top-5
  overlap of ``classify``, IoU of the two top ``localize`` boxes, share of the reference's
  ``detect`` boxes reproduced. Reported always; judged when ``--min-top5-overlap`` or
  ``--min-box-iou`` is given.

A candidate that cannot run here (a TensorRT manifest without TensorRT or a GPU) is reported
as skipped with the reason, never as passed; ``--fail-on-skip`` makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from overfeat.errors import InputError
from overfeat.metadata import INPUT_NAME, ModelMeta
from overfeat.progress import Progress
from overfeat.runtime.compare import Agreement, OutputErrors

STATS = ("elemwise", "max", "mean", "median")
_SAME = (
    "arch",
    "window",
    "stride",
    "fine_stride",
    "geometry",
    "heads",
    "classes",
    "mean",
    "std",
    "box_per_class",
    "background_index",
)


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate's raw outputs may be from the reference's."""

    stat: str
    atol: float  # fraction of the reference output's largest magnitude
    rtol: float

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise InputError(f"tolerance statistic {self.stat!r}: expected one of {', '.join(STATS)}")
        if not (self.atol >= 0 and self.rtol >= 0):
            raise InputError(f"tolerances must not be negative, got atol {self.atol}, rtol {self.rtol}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, Tolerance]:
        """``"int8=mean:0.03:0"`` → ("int8", Tolerance("mean", 0.03, 0.0))."""
        precision, _, rest = str(text).partition("=")
        parts = rest.split(":")
        if precision not in DEFAULT_TOLERANCES or len(parts) != 3:
            raise InputError(
                f"`tolerance` {text!r}: expected PRECISION=STAT:ATOL:RTOL with PRECISION one of {', '.join(DEFAULT_TOLERANCES)}, e.g. fp16=elemwise:0.01:0.01"
            )
        try:
            atol, rtol = float(parts[1]), float(parts[2])
        except ValueError:
            raise InputError(f"`tolerance` {text!r}: ATOL and RTOL must be numbers") from None
        return precision, cls(parts[0], atol, rtol)

    def __str__(self) -> str:
        return f"{self.stat} atol {self.atol:g}×range rtol {self.rtol:g}"


# fp32: different kernels, same arithmetic. fp16: 11-bit mantissas through nine layers.
# bf16 (OpenVINO's execution of an fp32 file): 8-bit mantissas, fp32 accumulation.
# int8: per element the quantization step shows, so the mean error is what is bounded.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance("elemwise", 1e-4, 1e-3),
    "fp16": Tolerance("elemwise", 2e-2, 1e-2),
    "bf16": Tolerance("elemwise", 5e-2, 5e-2),
    "int8": Tolerance("mean", 2.5e-2, 0.0),
}


@dataclass(frozen=True)
class ValidateConfig:
    images: str | None = None  # a directory, a COCO JSON or shapes:SPLIT:N
    random: int | None = None  # or this many random images
    max_images: int = 10
    pyramid: Any = "paper"
    flip: bool = True
    seed: int = 0
    tolerances: Mapping[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    min_top5_overlap: float | None = None
    min_box_iou: float | None = None
    fail_on_skip: bool = False
    allow_host_code: bool = False  # TensorRT may load version-compatible plans (they run code they embed)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.random is None):
            raise InputError("give the inputs: `images` DATA or `random` N (one of them)")
        from overfeat.datasets.images import check_count

        check_count(self.random, "`random`")
        check_count(self.max_images, "`max_images`")
        for name in ("min_top5_overlap", "min_box_iou"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise InputError(f"`{name}` {value}: expected a number within 0..1")


@dataclass
class Model:
    path: str
    kind: str  # the backend that runs it: onnxruntime, openvino, torch or tensorrt
    precision: str  # the arithmetic it runs in (OpenVINO: fp32, bf16 or int8; else the file's)
    meta: ModelMeta
    skip: str | None = None  # why it cannot run here
    backend: Any = None  # an open backend (torch) handed to the runner
    options: dict[str, Any] = field(default_factory=dict)  # the backend's options (OpenVINO: precision)


@dataclass
class CandidateReport:
    path: str
    kind: str
    precision: str
    tolerance: Tolerance
    status: str = "pass"  # pass, fail or skip
    reason: str = ""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "precision": self.precision,
            "tolerance": {
                "stat": self.tolerance.stat,
                "atol_fraction_of_range": self.tolerance.atol,
                "rtol": self.tolerance.rtol,
            },
            "status": self.status,
            "reason": self.reason,
            "outputs": self.outputs,
            "agreement": self.agreement,
        }


@dataclass
class ValidationReport:
    reference: str
    inputs: str
    images: int
    batches: int
    pyramid: str
    flip: bool
    candidates: list[CandidateReport]
    fail_on_skip: bool = False

    @property
    def passed(self) -> bool:
        bad = ("fail", "skip") if self.fail_on_skip else ("fail",)
        return not any(c.status in bad for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "inputs": self.inputs,
            "images": self.images,
            "batches": self.batches,
            "pyramid": self.pyramid,
            "flip": self.flip,
            "fail_on_skip": self.fail_on_skip,
            "passed": self.passed,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def summary(self) -> str:
        w = max([6] + [len(c.kind) for c in self.candidates])  # the runner column: "onnxruntime", "openvino", ...
        lines = [
            f"validate: {len(self.candidates)} candidate(s) against {self.reference}",
            f"inputs: {self.inputs}, {self.images} images x pyramid {self.pyramid}{' + flips' if self.flip else ''} = {self.batches} batches",
            f"{'candidate':<40} {'runner':<{w}} {'prec':<5} {'worst output (max err / range)':<32} {'top-5':>6} {'box IoU':>7}  result",
        ]
        for c in self.candidates:
            worst = max(c.outputs.items(), key=lambda kv: kv[1]["relative"], default=None)
            worst_text = f"{worst[0]} {worst[1]['relative']:.2e}" if worst else "-"
            top5 = f"{c.agreement['top5_overlap']:.1%}" if "top5_overlap" in c.agreement else "-"
            iou = c.agreement.get("localize_iou", c.agreement.get("detect_iou"))
            result = c.status.upper() + (f": {c.reason}" if c.reason else "")
            lines.append(
                f"{_short(c.path, 40):<40} {c.kind:<{w}} {c.precision:<5} {worst_text:<32} {top5:>6} {f'{iou:.3f}' if iou is not None else '-':>7}  {result}"
            )
        counts = {s: sum(c.status == s for c in self.candidates) for s in ("pass", "fail", "skip")}
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
            + (" (skips fail the run: --fail-on-skip)" if self.fail_on_skip and counts["skip"] else "")
        )
        return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


class _MapsOnly:
    """A stand-in backend that lets the runtime decode maps computed elsewhere."""

    name = "maps"

    def __init__(self, meta: ModelMeta, source: str) -> None:
        self.meta, self.source = meta, source

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.meta.output_names

    def run(self, feeds):
        raise RuntimeError("decoding only")

    def close(self) -> None:
        pass


def describe(spec: str, allow_host_code: bool = False) -> Model:
    """What a model is and how it runs: an ONNX file (ONNX Runtime; ``FILE.onnx@openvino`` or
    ``FILE.onnx@openvino:bf16`` in OpenVINO), a PyTorch checkpoint or an engine manifest."""
    from overfeat.runtime.backends import model_kind, model_spec

    path, runs_in, precision = model_spec(spec)
    p = Path(path)
    kind = model_kind(path)
    if kind == "onnx":
        from overfeat.calibration.inspect import inspect_onnx

        meta = inspect_onnx(p).meta
        if runs_in == "onnxruntime":
            return Model(str(path), "onnxruntime", meta.precision, meta)
        from overfeat.runtime.backends.openvino import unavailable

        precision = precision or "fp32"
        if precision == "bf16" and meta.precision != "fp32":
            raise InputError(f"model {spec}: bf16 execution is for fp32 files; {path} is {meta.precision}")
        ran = "int8" if meta.precision == "int8" else precision
        return Model(str(spec), "openvino", ran, meta, skip=unavailable(), options={"precision": precision})
    if kind == "manifest":
        from overfeat.runtime.backends.tensorrt import unavailable
        from overfeat.runtime.manifest import Manifest, host_code_allowed

        manifest = Manifest.load(p)
        options = {"allow_host_code": True} if host_code_allowed(manifest, allow_host_code) else {}
        return Model(str(path), "tensorrt", manifest.precision, manifest.meta, skip=unavailable(), options=options)
    from overfeat.runtime.backends import create_backend  # a checkpoint

    backend = create_backend(p, "torch")
    return Model(str(path), "torch", "fp32", backend.meta, backend=backend)


def _check_same_model(reference: Model, candidate: Model) -> None:
    for key in _SAME:
        a, b = getattr(reference.meta, key), getattr(candidate.meta, key)
        if a != b:
            raise InputError(
                f"{candidate.path} is not a conversion of {reference.path}: {key} differs ({b!r} vs {a!r}); validate a model against its own conversions"
            )


def _inputs(config: ValidateConfig, meta: ModelMeta) -> tuple[str, list[np.ndarray]]:
    from overfeat.datasets.images import kept_images, open_images, random_images

    if config.random is not None:
        arrays = kept_images(random_images(config.random, meta.window, config.seed), f"{config.random} random images (`random`)")
        return f"{config.random} random images (seed {config.seed})", arrays
    images = open_images(config.images, config.seed)
    taken = (image for _, image, _ in images.take(config.max_images))
    arrays = kept_images(taken, f"{config.max_images} images of {config.images} (`max_images`)")
    if not arrays:
        raise InputError(f"`images` {config.images}: no readable images")
    skipped = f", {len(images.skipped)} unreadable skipped" if images.skipped else ""
    return f"{config.images} ({len(arrays)} images, seed {config.seed}{skipped})", arrays


def _runner(model: Model, name: str):
    from .runners import BackendRunner, backend_runner, onnx_runner

    if model.kind == "onnxruntime":
        return onnx_runner(model.path, name)
    if model.backend is not None:
        backend = model.backend
        return BackendRunner(lambda: backend, name)
    return backend_runner(model.path.partition("@")[0], model.kind, name, **model.options)


def validate(reference: str, candidates: list[str], config: ValidateConfig, progress: Progress | None = None) -> ValidationReport:
    from polygraphy.comparator import Comparator, RunResults

    from overfeat.runtime.pyramid import pyramid_batches

    from .runners import compare_func, quiet

    progress = progress or Progress(enabled=False)
    if not candidates:
        raise InputError("give at least one candidate (`candidates`)")
    quiet()
    with progress.step("opening the models"):
        ref = describe(reference, config.allow_host_code)
        models = [describe(c, config.allow_host_code) for c in candidates]
    if ref.skip:
        raise InputError(
            f"the reference {reference} cannot run here: {ref.skip}; use the ONNX file or the checkpoint as the reference"
        )
    for model in models:
        _check_same_model(ref, model)
    label, images = _inputs(config, ref.meta)
    feeds, where = [], []
    for index, image in enumerate(images):
        for scale, batch in pyramid_batches(image, config.pyramid, ref.meta, config.flip):
            feeds.append({INPUT_NAME: batch})
            where.append((index, scale))
    reports = [
        CandidateReport(m.path, m.kind, m.precision, config.tolerances.get(m.precision, DEFAULT_TOLERANCES[m.precision]))
        for m in models
    ]
    runnable = [(i, m) for i, m in enumerate(models) if m.skip is None]
    for i, m in enumerate(models):
        if m.skip:
            reports[i].status, reports[i].reason = "skip", m.skip
    results = RunResults()
    try:
        with progress.step(f"running the reference {ref.path} ({ref.kind}, {ref.precision}) on {len(feeds)} batches"):
            results.extend(Comparator.run([_runner(ref, "reference")], data_loader=feeds))
    except Exception as exc:  # noqa: BLE001 - Polygraphy, ONNX Runtime and PyTorch each raise their own
        raise InputError(f"the reference {ref.path} could not run on these inputs: {_first_line(exc)}") from None
    ran = []
    for i, model in runnable:
        try:
            with progress.step(f"running {model.path} ({model.kind}, {model.precision}) on {len(feeds)} batches"):
                results.extend(Comparator.run([_runner(model, f"candidate{i}:{Path(model.path).name}")], data_loader=feeds))
            ran.append(i)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run fails; the others are still judged
            reports[i].status, reports[i].reason = "fail", f"could not run: {_first_line(exc)}"
    reference_out = results["reference"]
    scale_of = {k: max(float(np.abs(it[k]).max()) for it in reference_out) for k in ref.meta.output_names}
    for position, i in enumerate(ran, 1):
        _judge(reports[i], results, position, scale_of, ref.meta, images, where, config, compare_func, Comparator)
    pyramid = config.pyramid if isinstance(config.pyramid, (str, int)) else ",".join(f"{h}x{w}" for h, w in config.pyramid)
    return ValidationReport(reference, label, len(images), len(feeds), str(pyramid), config.flip, reports, config.fail_on_skip)


def _judge(
    report: CandidateReport,
    results,
    position: int,
    scale_of: dict[str, float],
    meta: ModelMeta,
    images,
    where,
    config: ValidateConfig,
    compare_func,
    comparator,
) -> None:
    tol = report.tolerance
    atol = {k: tol.atol * max(v, 1e-12) for k, v in scale_of.items()}
    # (candidate, reference): Polygraphy's relative error divides by the second, the reference
    accuracy = comparator.compare_accuracy(
        results, comparisons=[(position, 0)], compare_func=compare_func(atol, tol.rtol, tol.stat)
    )
    per_output: dict[str, list[bool]] = {}
    for result in [accuracy] if hasattr(accuracy, "values") else accuracy:  # newer Polygraphy: one result per compare function
        for iterations in result.values():
            for iteration in iterations:
                for name, verdict in iteration.items():
                    per_output.setdefault(name, []).append(bool(verdict))
    ref_iters, cand_iters = list(results.values())[0], list(results.values())[position]
    errors = OutputErrors(meta.output_names)  # relative to the reference's largest magnitude over the run, scale_of
    for r, c in zip(ref_iters, cand_iters, strict=True):
        errors.add(r, c)
    for name in meta.output_names:
        verdicts = per_output.get(name, [False])
        report.outputs[name] = {
            **errors[name].to_dict(),
            "atol": atol[name],
            "failed_batches": int(sum(not v for v in verdicts)),
            "passed": all(verdicts),
        }
    report.agreement = _task_agreement(meta, ref_iters, cand_iters, images, where, config)
    failures = [
        f"{k} outside {tol.stat} tolerance in {v['failed_batches']} of {len(ref_iters)} batches"
        for k, v in report.outputs.items()
        if not v["passed"]
    ]
    if config.min_top5_overlap is not None and report.agreement.get("top5_overlap", 1.0) < config.min_top5_overlap:
        failures.append(f"top-5 overlap {report.agreement['top5_overlap']:.1%} < {config.min_top5_overlap:.1%}")
    iou = report.agreement.get("localize_iou", report.agreement.get("detect_iou"))
    if config.min_box_iou is not None and iou is not None and iou < config.min_box_iou:
        failures.append(f"box IoU {iou:.3f} < {config.min_box_iou:.3f}")
    if failures:
        report.status, report.reason = "fail", "; ".join(failures)


def _task_agreement(meta: ModelMeta, ref_iters, cand_iters, images, where, config: ValidateConfig) -> dict[str, float]:
    """Decode both models' outputs per image with the runtime and measure how the results agree."""
    from overfeat.runtime import Predictor
    from overfeat.runtime.evaluate import EVAL_DECODE as AGREEMENT_DECODE  # detections from probability 0.1, as the gate
    from overfeat.runtime.predictor import ScaleMaps
    from overfeat.runtime.tasks import default_tasks

    decoder = Predictor(_MapsOnly(meta, "validate"), pyramid=config.pyramid, flip=config.flip)
    tasks = default_tasks(meta)
    per_image: dict[int, tuple[list, list]] = {}
    for (index, scale), r, c in zip(where, ref_iters, cand_iters, strict=True):
        a, b = per_image.setdefault(index, ([], []))
        a.append(ScaleMaps(scale, {k: np.asarray(r[k]) for k in meta.output_names}))
        b.append(ScaleMaps(scale, {k: np.asarray(c[k]) for k in meta.output_names}))
    agreement = Agreement()
    for index, (a, b) in per_image.items():
        size = images[index].shape[:2]
        agreement.add(*(decoder.decode(maps, tasks, AGREEMENT_DECODE, image_size=size) for maps in (a, b)))
    return agreement.to_dict()


def write_report(report: ValidationReport, path: str | os.PathLike[str]) -> None:
    from overfeat.fileio import write_json

    write_json(path, report.to_dict())
