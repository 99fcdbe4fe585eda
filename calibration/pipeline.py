"""``overfeat calibrate`` and ``overfeat convert``: convert, check against fp32, and only then write.

INT8 (:func:`calibrate`): ranges (from the cache when it matches, else collected and cached)
→ Q/DQ model → accuracy check on held-out images. When the check fails, the layers are ranked
by sensitivity; with ``auto_exclude`` the fewest most-sensitive layers that make the check
pass are kept in float (a bisection over the ranking), and the cost in speed is measured. FP16 (:func:`convert`):
conversion → accuracy check. The converted model reaches ``output`` only when it passes (or
when the check is switched off); the report is written either way.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from overfeat.datasets.images import ImageSet, open_images
from overfeat.errors import BuildError, InputError
from overfeat.fileio import atomic_path, check_output_path, sha256_file, work_dir, write_json
from overfeat.metadata import INPUT_NAME, ModelMeta
from overfeat.progress import Progress
from overfeat.runtime.pyramid import pyramid_batches

from .gate import MIN_CHECK_IMAGES, CompareOptions, Comparison, GateConfig, ReferenceOutputs, compare
from .int8 import check_exclude, quantize_int8
from .ranges import Method, Ranges, collect_ranges, load_ranges, range_problem, save_ranges
from .sensitivity import rank_layers, time_model

MIN_IMAGES = 8  # fewer calibration images than this give ranges too noisy to trust
SENSITIVITY_IMAGES = 4  # calibration images whose feeds measure each layer's sensitivity


@dataclass(frozen=True)
class CheckConfig:
    """The accuracy check: held-out images (None: those after the calibration images) and limits."""

    images: str | None = None
    count: int = 100
    seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)
    backend: str = "onnxruntime"  # what runs the candidate (the fp32 reference runs in ONNX Runtime)

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "openvino"):
            raise InputError(f"`CheckConfig.backend` {self.backend}: expected onnxruntime or openvino")
        if self.count < MIN_CHECK_IMAGES:
            raise InputError(
                f"`CheckConfig.count` {self.count}: the accuracy check needs at least {MIN_CHECK_IMAGES} held-out images"
            )

    def options(self, pyramid: Any, flip: bool) -> CompareOptions:
        """How the gate runs the fp32 model and the candidate: ``pyramid`` and ``flip``, this
        check's limits and candidate backend."""
        return CompareOptions(pyramid, flip, self.gate, candidate_backend=self.backend)


@dataclass(frozen=True)
class CalibrateConfig:
    method: Method
    images: str
    max_images: int = 64
    seed: int = 0
    pyramid: Any = "paper"
    flip: bool = True
    exclude: tuple[str, ...] = ()
    auto_exclude: bool = False
    cache: str | None = None  # None: no cache
    check: CheckConfig | None = field(default_factory=CheckConfig)  # None: no accuracy check

    def __post_init__(self) -> None:
        if self.max_images < MIN_IMAGES:
            raise InputError(f"`max_images` {self.max_images}: calibration needs at least {MIN_IMAGES} images")
        if self.auto_exclude and self.check is None:
            raise InputError("`auto_exclude` needs the accuracy check: leave out `check=None`")


@dataclass
class Report:
    model: str
    output: str | None  # None: an execution precision (bf16), no file
    precision: str
    written: bool = False
    calibration: dict[str, Any] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    speed: dict[str, float] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # --auto-exclude: each exclusion set tried
    check: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "check"}
        out["check"] = self.check.to_dict() if self.check else None
        return out

    def table(self) -> str:
        lines = []
        if self.calibration:
            c = self.calibration
            lines.append(
                f"calibration  {c['method']} on {c['count']} images ({c['feeds']} feeds){' from cache ' + c['cache'] if c.get('from_cache') else ''}"
            )
            if c["skipped"]:
                lines.append(
                    f"  skipped {len(c['skipped'])} unreadable files: "
                    + ", ".join(name for name, _ in c["skipped"][:10])
                    + (" ..." if len(c["skipped"]) > 10 else "")
                )
        if self.sensitivity:
            lines.append("sensitivity (output error with only this layer in int8; larger = more sensitive):")
            lines += [f"  {s['node']:<28} {s['error']:.4f}" for s in self.sensitivity[:8]]
        if self.excluded:
            lines.append(f"kept in float: {', '.join(self.excluded)}")
        if self.speed:
            s = self.speed
            lines.append(
                f"speed at {s['size']}: fp32 {s['fp32'] * 1e3:.1f} ms, int8 {s['int8'] * 1e3:.1f} ms, int8 with exclusions {s['int8_excluded'] * 1e3:.1f} ms "
                f"({s['int8_excluded'] / s['int8']:.2f}× the time of full int8)"
            )
        if self.check:
            lines.append(self.check.table())
        else:
            lines.append("accuracy check: not run (--no-check)")
        if self.output is None:
            verdict = "passes" if self.check and self.check.passed else "fails"
            lines.append(
                f"{self.precision} is an execution precision (OpenVINO runs {self.model} in it): nothing to write; it {verdict} the accuracy check"
            )
        elif self.written:
            lines.append(f"wrote {self.output}")
        else:
            older = " (the file of that name is from an earlier run)" if Path(self.output).exists() else ""
            lines.append(f"{self.output} was not written{older}: the converted model failed the accuracy check")
        return "\n".join(lines)


def _stem(path: str) -> str:
    return path[:-5] if path.endswith(".onnx") else path


def default_cache(output: str) -> str:
    """Where calibrate keeps the activation ranges of ``output`` unless told: ``<output>.calib.json``."""
    return _stem(output) + ".calib.json"


def default_report(model: str, output: str | None, precision: str) -> str:
    """Where calibrate and convert write their report unless told: ``<output>.check.json``, or,
    when no model is written (bf16), ``<model>.<precision>.check.json``."""
    return _stem(output) + ".check.json" if output else _stem(model) + f".{precision}.check.json"


def _fp32_meta(model: str) -> ModelMeta:
    from overfeat.calibration.inspect import inspect_onnx

    meta = inspect_onnx(model).meta
    if meta.precision != "fp32":
        raise InputError(f"model {model} is already {meta.precision}; convert the fp32 model exported by 'overfeat export'")
    return meta


def _outputs(model: str, output: str, *others: tuple[str | None, str]) -> None:
    """Refuse unwritable outputs before any work, and an output that would replace the model."""
    check_output_path(output, "`output`")
    if Path(output).resolve() == Path(model).resolve():
        raise InputError(f"`output` {output} is the model itself; write the converted model to another file")
    for path, what in others:
        if path:
            check_output_path(path, what)


def _gate_applies(meta: ModelMeta, check: ImageSet | None) -> None:
    """Refuse a check that could never pass: no cls head to agree on and no labels to score."""
    if check is not None and "cls" not in meta.heads and not (check.classes and "det" in meta.heads):
        raise InputError(
            f"the model's heads {list(meta.heads)} have no classification to compare, and the check images {check.spec} have no labels: give labelled `CheckConfig.images` data (a COCO JSON)"
        )


def _same_set(a: str, b: str) -> bool:
    if a.startswith("shapes:") or b.startswith("shapes:"):
        return a.split(":")[:2] == b.split(":")[:2]
    return Path(a).resolve() == Path(b).resolve()


def calibrate(
    model: str, output: str, config: CalibrateConfig, progress: Progress | None = None, report_path: str | None = None
) -> Report:
    """Calibrate ``model`` to INT8 as ``config`` says and write ``output`` if it passes the
    accuracy check (or when there is none); ``report_path``: the report's JSON."""
    progress = progress or Progress(enabled=False)
    _outputs(model, output, (config.cache, "`cache`"), (report_path, "`report_path`"))
    meta = _fp32_meta(model)
    images = open_images(config.images, config.seed)
    if len(images.items) < MIN_IMAGES:
        raise InputError(f"images {config.images} hold {len(images.items)} images, calibration needs at least {MIN_IMAGES}")
    config, check_set = _plan_check(config, meta, images)
    import onnx

    exclude = list(check_exclude(onnx.load(model, load_external_data=False), config.exclude))
    report = Report(model, output, "int8")
    ranges = _ranges(model, meta, images, config, progress)
    report.calibration = {
        "method": config.method.label,
        "count": ranges.data_count,
        "feeds": ranges.feeds,
        "skipped": [list(s) for s in ranges.skipped],
        "from_cache": ranges.from_cache,
        "cache": config.cache,
    }
    with work_dir("calibrate") as tmp:
        candidate = str(Path(tmp) / "candidate.int8.onnx")
        with progress.step(f"quantizing ({len(exclude)} layers kept in float)"):
            quantize_int8(model, ranges, candidate, exclude)
        if config.check is not None:
            # a separate check set as opened above; else the calibration set after the images calibration read
            held_out = (
                (check_set, 0)
                if config.check.images is not None
                else _check_images(config, images, ranges.end, ranges.data_count)
            )
            trial = _Trial(model, candidate, ranges, *held_out, config, progress)
            _check(trial, meta, images, exclude, report)
            if exclude:
                report.speed = _speed(model, ranges, candidate, meta, images, config, tmp)
        report.excluded = exclude
        return _finish(report, candidate, report_path)


def _plan_check(config: CalibrateConfig, meta: ModelMeta, images: ImageSet) -> tuple[CalibrateConfig, ImageSet | None]:
    """Before any work: the check's images exist, are not the calibration split, and the gate
    applies to them. Returns the config (a check set equal to the calibration set becomes the
    images after the calibration ones) and the separate check set, if any."""
    if config.check is None:
        return config, None
    if config.check.images is not None and _same_set(config.check.images, config.images):
        if config.images.startswith("shapes:"):
            raise InputError(
                f"`CheckConfig.images` {config.check.images} is the calibration split; check on another split (e.g. shapes:test:N)"
            )
        config = replace(config, check=replace(config.check, images=None))
    used = min(config.max_images, len(images.items))
    check_set, _ = _check_images(config, images, used, used)
    _gate_applies(meta, check_set)
    return config, check_set


def _ranges(model: str, meta: ModelMeta, images: ImageSet, config: CalibrateConfig, progress: Progress) -> Ranges:
    """The activation ranges: from the cache when it holds this model's, method's and images',
    else collected (and cached)."""
    with progress.step(f"hashing {model}"):
        sha = sha256_file(model)
    data = {
        "images": images.spec,
        "fingerprint": images.fingerprint(),
        "max_images": config.max_images,
        "seed": config.seed,
        "pyramid": str(config.pyramid),
        "flip": config.flip,
    }
    ranges = load_ranges(config.cache, sha, config.method, data, model) if config.cache else None
    if ranges is not None:
        progress.info(f"reusing the {config.method.label} ranges in {config.cache}")
        return ranges
    ranges = _collect(model, meta, images, config, sha, data, progress)
    problem = range_problem(ranges.ranges)  # what a cache may not hold, the calibration may not give
    if problem:
        raise BuildError(
            f"the calibration of {model} gave a range that cannot be quantized: {problem}; give other calibration `images`"
        )
    if config.cache:
        save_ranges(config.cache, ranges)
    return ranges


@dataclass
class _Trial:
    """An INT8 candidate under the accuracy check: the fp32 model, the candidate file and its
    ranges, the held-out images (from ``start``), the check's options."""

    model: str
    candidate: str
    ranges: Ranges
    images: ImageSet
    start: int
    config: CalibrateConfig
    progress: Progress
    # auto_exclude compares several candidates on the same images: the fp32 model runs once
    reference: ReferenceOutputs | None = None

    def __post_init__(self) -> None:
        if self.config.auto_exclude:
            self.reference = ReferenceOutputs()

    def quantize(self, layers: list[str]) -> None:
        with self.progress.step(f"quantizing with {len(layers)} layers kept in float"):
            quantize_int8(self.model, self.ranges, self.candidate, layers)

    def compare(self) -> Comparison:
        check = self.config.check
        options = check.options(self.config.pyramid, self.config.flip)
        return compare(
            self.model,
            self.candidate,
            self.images,
            check.count,
            self.start,
            options,
            progress=self.progress,
            reference_outputs=self.reference,
        )


def _check(trial: _Trial, meta: ModelMeta, images: ImageSet, exclude: list[str], report: Report) -> None:
    """The accuracy check of the candidate; on a failure, the layers ranked by sensitivity and,
    with auto_exclude, the fewest of them kept in float that pass."""
    report.check = trial.compare()
    if report.check.passed:
        return
    config = trial.config
    feeds = [
        f for _, image, _ in images.take(SENSITIVITY_IMAGES) for f in calibration_feeds(image, meta, config.pyramid, config.flip)
    ]
    ranked = rank_layers(trial.model, trial.ranges, feeds, exclude, trial.progress)
    report.sensitivity = [{"node": s.node, "error": s.error} for s in ranked]
    if config.auto_exclude:
        _auto_exclude(trial, exclude, ranked, report)


def _collect(
    model: str, meta: ModelMeta, images: ImageSet, config: CalibrateConfig, sha: str, data: dict, progress: Progress
) -> Ranges:
    read: list[str] = []
    feeds = [0]

    def per_image():
        for name, image, _ in progress.track(
            images.take(config.max_images), "calibrating", total=min(config.max_images, len(images.items))
        ):
            read.append(name)
            batch = list(calibration_feeds(image, meta, config.pyramid, config.flip))
            feeds[0] += len(batch)
            yield batch

    values = collect_ranges(model, per_image(), config.method, progress)
    if len(read) < MIN_IMAGES:
        skipped = "; ".join(f"{n} ({r})" for n, r in images.skipped[:5])
        raise InputError(
            f"only {len(read)} of the images could be read, calibration needs at least {MIN_IMAGES}"
            + (f"; unreadable: {skipped}" if skipped else "")
        )
    return Ranges(sha, config.method, data, values, list(images.skipped), end=images.next, data_count=len(read), feeds=feeds[0])


def _check_images(config: CalibrateConfig, images: ImageSet, end: int, used: int) -> tuple[ImageSet, int]:
    """The held-out set and its start: ``--check`` data, or ``images`` from ``end`` on (the
    position after the ``used`` calibration images)."""
    check = config.check
    if check.images is not None:
        held_out = open_images(check.images, check.seed)
        if len(held_out.items) < MIN_CHECK_IMAGES:
            raise InputError(
                f"`CheckConfig.images` {check.images} holds {len(held_out.items)} images, the accuracy check needs at least {MIN_CHECK_IMAGES}"
            )
        return held_out, 0
    left = len(images.items) - end
    if left < MIN_CHECK_IMAGES:
        raise InputError(
            f"images {config.images} hold {left} images beyond the {used} used for calibration; the accuracy check needs at least "
            f"{MIN_CHECK_IMAGES} held-out images: give `CheckConfig.images` DATA, more images, or `check=None`"
        )
    return images, end


def _auto_exclude(trial: _Trial, exclude: list[str], ranked: list, report: Report) -> None:
    """Keep the k most sensitive layers of ``ranked`` in float (besides ``exclude``), for the
    smallest k that passes; ``exclude`` becomes the layers kept."""
    fixed = list(exclude)
    results: dict[int, Comparison] = {}

    def passes(k: int) -> bool:
        layers = fixed + [s.node for s in ranked[:k]]
        trial.quantize(layers)
        results[k] = result = trial.compare()
        report.attempts.append(
            {"excluded": layers, "passed": result.passed, "failures": result.failures, "agreement": result.agreement}
        )
        return result.passed

    k = smallest_passing(len(ranked) - 1, passes)  # never all layers: that would leave no INT8 model
    if k is None:
        quantize_int8(trial.model, trial.ranges, trial.candidate, fixed)  # back to the model the report describes
        tried = (
            f"even with all but one of the {len(ranked) + len(fixed)} layers in float"
            if ranked[1:]
            else "and there is no layer left to keep in float"
        )
        report.check.failures.append(f"--auto-exclude: the gate fails {tried}; no INT8 model of this network passes")
        return
    exclude[:] = fixed + [s.node for s in ranked[:k]]
    trial.quantize(exclude)
    report.check = results[k]


def smallest_passing(most: int, passes) -> int | None:
    """The smallest k in 1..``most`` with ``passes(k)``, for a monotone ``passes`` (False up to
    some k, True from there on); None when even ``most`` fails. Bisection: at most
    1 + ⌈log2(most)⌉ calls."""
    if most < 1 or not passes(most):
        return None
    lo, hi = 1, most  # passes(hi) holds; the answer lies in lo..hi
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _speed(model, ranges, candidate, meta, images, config, tmp) -> dict[str, Any]:
    """Time of one mid-pyramid feed: fp32, full int8, int8 with the exclusions (side by side)."""
    plain = str(Path(tmp) / "plain.int8.onnx")
    quantize_int8(model, ranges, plain, ())
    _, image, _ = next(images.take(1))
    feeds = list(calibration_feeds(image, meta, config.pyramid, config.flip))
    feed = feeds[len(feeds) // 2]
    size = "x".join(str(v) for v in feed["image"].shape[2:])
    return {
        "size": size,
        "fp32": time_model(model, feed),
        "int8": time_model(plain, feed),
        "int8_excluded": time_model(candidate, feed),
    }


def _finish(report: Report, candidate: str, report_path: str | None) -> Report:
    """Put the candidate at the output if it passed (or was not checked); write the report."""
    if report.check is not None:
        report.check.candidate = report.output
    if report.check is None or report.check.passed:
        with atomic_path(report.output) as tmp:
            shutil.copyfile(candidate, tmp)
        report.written = True
    if report_path:
        write_json(report_path, report.to_dict())
    return report


def convert(
    model: str,
    output: str | None,
    precision: str,
    check: CheckConfig | None,
    pyramid: Any = "paper",
    flip: bool = True,
    progress: Progress | None = None,
    report_path: str | None = None,
) -> Report:
    """``overfeat convert --precision fp16`` (writes ``output``) or ``bf16`` (writes nothing:
    OpenVINO runs the fp32 file in bf16; the gate judges that execution, which needs a check)."""
    from .fp16 import convert_fp16

    progress = progress or Progress(enabled=False)
    if precision == "bf16":
        return check_bf16(model, output, check, pyramid, flip, progress, report_path)
    if precision != "fp16":
        raise InputError(
            f"`precision` {precision}: convert writes fp16 (or checks bf16); INT8 needs calibration ('overfeat calibrate')"
        )
    if output is None:
        raise InputError("`precision` fp16 writes a model: give `output`")
    _outputs(model, output, (report_path, "`report_path`"))
    meta = _fp32_meta(model)
    if check is not None and check.images is None:
        raise InputError(
            "the fp16 accuracy check needs held-out images: give `CheckConfig.images` DATA (a directory, a COCO JSON or shapes:SPLIT:N), or `check=None`"
        )
    held_out = open_images(check.images, check.seed) if check is not None else None
    if held_out is not None and len(held_out.items) < MIN_CHECK_IMAGES:
        raise InputError(
            f"`CheckConfig.images` {check.images} holds {len(held_out.items)} images, the accuracy check needs at least {MIN_CHECK_IMAGES}"
        )
    _gate_applies(meta, held_out)
    report = Report(model, output, "fp16")
    with work_dir("convert") as tmp:
        candidate = str(Path(tmp) / "candidate.fp16.onnx")
        with progress.step("converting to fp16"):
            convert_fp16(model, candidate)
        if check is not None:
            report.check = compare(model, candidate, held_out, check.count, 0, check.options(pyramid, flip), progress=progress)
        return _finish(report, candidate, report_path)


def check_bf16(
    model: str,
    output: str | None,
    check: CheckConfig | None,
    pyramid: Any = "paper",
    flip: bool = True,
    progress: Progress | None = None,
    report_path: str | None = None,
) -> Report:
    """The gate on bf16: the fp32 file run by OpenVINO in bf16 (``--backend openvino --precision
    bf16``) against the same file in ONNX Runtime fp32. bf16 is an execution precision, not a
    file, so nothing is written: the report says whether it passed."""
    from overfeat.runtime.backends import REGISTRY

    progress = progress or Progress(enabled=False)
    if output is not None:
        raise InputError(f"`output` {output}: bf16 writes no model (OpenVINO runs the fp32 file in bf16); leave `output` out")
    if check is None or check.images is None:
        raise InputError(
            "`precision` bf16 is the accuracy check alone: give `CheckConfig.images` DATA (a directory, a COCO JSON or shapes:SPLIT:N)"
        )
    if not REGISTRY["openvino"].is_available():
        raise InputError(f"bf16 runs in OpenVINO, which is not available here: {REGISTRY['openvino'].needs}")
    if report_path:
        check_output_path(report_path, "`report_path`")
    meta = _fp32_meta(model)
    held_out = open_images(check.images, check.seed)
    if len(held_out.items) < MIN_CHECK_IMAGES:
        raise InputError(
            f"`CheckConfig.images` {check.images} holds {len(held_out.items)} images, the accuracy check needs at least {MIN_CHECK_IMAGES}"
        )
    _gate_applies(meta, held_out)
    report = Report(model, None, "bf16")
    bf16 = replace(check.options(pyramid, flip), candidate_backend="openvino", candidate_precision="bf16")
    report.check = compare(model, model, held_out, check.count, 0, bf16, progress=progress)
    report.written = False
    if report_path:
        write_json(report_path, report.to_dict())
    return report


def calibration_feeds(image, meta: ModelMeta, pyramid, flip: bool):
    """One feed dict ``{"image": [B, 3, H, W]}`` per pyramid scale, preprocessed exactly as the
    runtime does (:func:`overfeat.runtime.pyramid.pyramid_batches`)."""
    for _, batch in pyramid_batches(image, pyramid, meta, flip):
        yield {INPUT_NAME: batch}
