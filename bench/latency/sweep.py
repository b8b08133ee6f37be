"""The benchmark sweep: plan one job per (artifact, target, batch, variant), run each in its own worker.

Targets that cannot run here become `unavailable: <reason>` rows (one per target), never silently
dropped. The PyTorch reference is the `torch-<precision>` pseudo-artifact from vitship.runtimes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vitship.bench.latency.timing import BenchRow, TimingOptions
from vitship.bench.latency.worker import DEFAULT_OPENER, RowJob, run_in_subprocess
from vitship.exporters.base import Artifact
from vitship.models import UnknownNameError, VitshipError
from vitship.models.status import Status
from vitship.runtimes.base import REFERENCE_LABEL

# (dtype, torch variant) rows per torch device; CUDA adds half precision and CUDA graphs (reduce-overhead).
TORCH_ROWS = {
    "cpu": (("fp32", "eager"), ("fp32", "compile")),
    "cuda": (("fp32", "eager"), ("fp32", "compile"), ("fp16", "eager"), ("bf16", "eager"),
             ("fp16", "cudagraphs"), ("bf16", "cudagraphs")),
}
# Targets left out unless asked for by name: AUTO duplicates a concrete device; a reference executor is not a runtime.
SKIPPED_BY_DEFAULT = {"openvino:AUTO": "duplicates openvino:CPU (name it with --target to measure it)",
                      "coreml:reference": f"{REFERENCE_LABEL}: it checks correctness; its latency means nothing"}
# --quick (make export-all): batch 1 on the devices' CPU targets (and Core ML's default compute units on a Mac), so
# the report can recommend one artifact per target. SKIPPED_BY_DEFAULT's targets are left out here too: an AUTO row
# repeats a CPU row, and numpy's time on coreml:reference never ranks (the full sweep times them when named).
QUICK_ARTIFACTS = ("torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp16", "openvino-int8",
                   "coreml-fp32", "coreml-fp16", "coreml-int8", "executorch-fp32", "executorch-int8",
                   "litert-fp32", "litert-fp16", "litert-int8",
                   "openvino-image-int8")  # per 1920x1080 frame, beside its tensor sibling openvino-int8
QUICK_TARGETS = ("torch:cpu", "onnxruntime:cpu", "openvino:CPU", "coreml:all", "executorch:cpu", "litert:cpu")


class BenchError(VitshipError):
    """The benchmark cannot start (inconsistent artifacts, bad options)."""


@dataclass(frozen=True)
class BenchConfig:
    """What to sweep and how to time it; recorded in bench.json."""

    batches: tuple[int, ...] = (1, 8, 32)
    threads: int | None = None  # None: physical cores (resolved before the sweep so every row records it)
    openvino_hints: tuple[str, ...] = ("latency",)
    openvino_precision: str | None = None  # None: the device default (bf16 on AVX512-BF16 CPUs); recorded per row
    # static: reshape the IR to each row's batch before compiling, as a fixed-batch app deploys it (see
    # runtimes.SessionOptions.static_batch); dynamic: run the IR's dynamic batch as exported.
    openvino_shape: str = "static"
    ort_optimizations: tuple[str, ...] = ("all",)
    torch_variants: tuple[str, ...] = ("eager", "compile", "cudagraphs")
    artifacts: tuple[str, ...] | None = None  # None: every artifact in the manifest, plus torch
    targets: tuple[str, ...] | None = None  # None: every available target (except SKIPPED_BY_DEFAULT)
    timing: TimingOptions = TimingOptions()
    row_timeout_s: float = 900.0
    opener: str = DEFAULT_OPENER

    def __post_init__(self):
        """Bad values are refused here, before any row runs (not as a KeyError in every row)."""
        for name, valid in option_choices().items():
            value = getattr(self, name)
            for item in (value if isinstance(value, tuple) else () if value is None else (value,)):
                if item not in valid:
                    close = difflib.get_close_matches(str(item), valid, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise BenchError(f"{name} {item!r} is not one of {', '.join(valid)}{hint}")
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise BenchError(f"batches {self.batches!r}: give whole numbers >= 1, e.g. (1, 8)")

    @classmethod
    def quick(cls, **changes) -> "BenchConfig":
        """Batch 1, short timing, the acceptance artifacts on the CPU targets: a minute or two on 2 cores."""
        base = cls(batches=(1,), artifacts=QUICK_ARTIFACTS, targets=QUICK_TARGETS, torch_variants=("eager",),
                   timing=TimingOptions(min_time_s=1.0, warmup_s=0.5, min_iterations=5))
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["timing"] = self.timing.to_dict()
        return data


def option_choices() -> dict[str, tuple[str, ...]]:
    """BenchConfig field -> its valid values, read from the runtimes' own option types (one source)."""
    from vitship.runtimes import OpenvinoHint, OpenvinoPrecision, OrtOptimization, TorchVariant

    return {"openvino_hints": typing.get_args(OpenvinoHint), "ort_optimizations": typing.get_args(OrtOptimization),
            "torch_variants": typing.get_args(TorchVariant), "openvino_precision": typing.get_args(OpenvinoPrecision),
            "openvino_shape": ("static", "dynamic")}


@dataclass
class SweepPlan:
    jobs: list[RowJob] = field(default_factory=list)
    unavailable: list[BenchRow] = field(default_factory=list)


def _variants(artifact: Artifact, target: str, config: BenchConfig) -> list[tuple[str, dict, Artifact | None]]:
    """(variant label, knobs, artifact override) for one artifact on one target."""
    runtime, _, device = target.partition(":")
    threads = {"threads": config.threads}
    if runtime == "onnxruntime":
        return [(f"opt={level}", {**threads, "ort_optimization": level}, None) for level in config.ort_optimizations]
    if runtime == "openvino":
        return [(f"hint={hint},{config.openvino_shape}", {**threads, "openvino_hint": hint,
                 "openvino_precision": config.openvino_precision, "openvino_shape": config.openvino_shape}, None)
                for hint in config.openvino_hints]
    if runtime == "torch":
        rows = TORCH_ROWS.get(device, TORCH_ROWS["cpu"])
        return [(mode, {**threads, "torch_variant": mode, "torch_dtype": dtype},
                 dataclasses.replace(artifact, id=f"torch-{dtype}", precision=dtype))
                for dtype, mode in rows if mode in config.torch_variants]
    return [("", threads, None)]


def plan_sweep(artifacts: list[Artifact], model_dir: Path, spec: dict, config: BenchConfig) -> SweepPlan:
    """Jobs for every artifact on every target its format runs on, and a row per unavailable target."""
    from vitship.runtimes import available_targets, can_run, physical_cores, takes_frames

    config = dataclasses.replace(config, threads=config.threads or physical_cores())
    plan = SweepPlan()
    wanted = set(config.artifacts) if config.artifacts else None
    statuses = available_targets()
    for name in set(config.targets or ()) - {s.target for s in statuses}:
        raise UnknownNameError("target", name, [s.target for s in statuses])
    for status in statuses:
        if config.targets is not None and status.target not in config.targets:
            continue
        if config.targets is None and status.target in SKIPPED_BY_DEFAULT:
            continue
        runnable = [a for a in artifacts if can_run(status.target, a.format)]
        if not status.available:  # one row per artifact it would have run (one "-" row when none)
            plan.unavailable += [BenchRow(artifact_id, status.target, None, "", status=Status.UNAVAILABLE,
                                          reason=status.reason) for artifact_id in [a.id for a in runnable] or ["-"]]
            continue
        for artifact in runnable:
            for label, knobs, override in _variants(artifact, status.target, config):
                row_artifact = override or artifact
                if wanted is not None and row_artifact.id not in wanted:
                    continue
                for batch in config.batches:
                    if batch != 1 and takes_frames(artifact.input_spec):  # no worker needed to say so
                        plan.unavailable.append(BenchRow(artifact.id, status.target, batch, label, status=Status.UNAVAILABLE,
                                                         reason="an image-input artifact takes one frame per call"))
                        continue
                    plan.jobs.append(RowJob(artifact=row_artifact.to_dict(), model_dir=str(model_dir), target=status.target,
                                            batch=batch, variant=label, knobs=dict(knobs), spec=spec,
                                            timing=config.timing.to_dict(), opener=config.opener))
    return plan


ProgressFn = Callable[[int, int, RowJob, BenchRow | None], None]


def run_sweep(plan: SweepPlan, config: BenchConfig, progress: ProgressFn | None = None) -> list[BenchRow]:
    """Run every job in its own worker, in order; ``progress(done, total, job, row)`` is called before
    each job (row None) and after it. A failing row never stops the sweep."""
    rows = []
    total = len(plan.jobs)
    for index, job in enumerate(plan.jobs):
        if progress:
            progress(index, total, job, None)
        row = run_in_subprocess(job, timeout_s=config.row_timeout_s)
        rows.append(row)
        if progress:
            progress(index + 1, total, job, row)
    return rows + plan.unavailable


def bench_artifacts(model_dir: Path, spec, weights_source: str) -> tuple[list[Artifact], dict]:
    """The manifest's artifacts plus the torch-fp32 reference, and the weights info they share.

    The weights come from the manifest (what the artifacts were exported from); without a manifest,
    ``weights_source`` is loaded to learn its sha256.
    """
    from vitship.exporters.base import manifest_artifacts
    from vitship.models import LoadedModel, WeightsInfo, load_weights
    from vitship.runtimes import torch_artifact

    artifacts = manifest_artifacts(model_dir)  # validated (a malformed manifest is a ManifestError); [] without one
    shas = {a.weights.get("sha256") for a in artifacts if a.weights}
    if len(shas) > 1:
        raise BenchError(f"{model_dir}: the artifacts were exported from different weights ({len(shas)} sha256s); "
                         "re-export them all (vitship export --all --force)")
    if artifacts and artifacts[0].weights:
        info = WeightsInfo.from_dict(artifacts[0].weights)
    else:
        info = load_weights(weights_source, spec).info
    reference = torch_artifact(LoadedModel(None, spec, info), "fp32")  # reads only .spec and .info
    return [reference, *artifacts], info.to_dict()


def run_bench(model_dir: Path, spec, weights_source: str, config: BenchConfig, progress: ProgressFn | None = None):
    """Plan and run the sweep; returns a BenchReport (not yet written) with the environment and weights."""
    from vitship.bench.environment import environment
    from vitship.bench.latency.results import BenchReport
    from vitship.bench.latency.roofline import apply_roofline, measure_peaks
    from vitship.runtimes import physical_cores

    config = dataclasses.replace(config, threads=config.threads or physical_cores())
    artifacts, weights = bench_artifacts(model_dir, spec, weights_source)
    plan = plan_sweep(artifacts, model_dir, spec.to_dict(), config)
    if config.artifacts is not None:
        known = {job.artifact_id for job in plan.jobs} | {a.id for a in artifacts}
        missing = sorted(set(config.artifacts) - known)
        plan.unavailable += [BenchRow(a, "-", None, "", status=Status.UNAVAILABLE,
                                      reason="not in the manifest; export it first")
                             for a in missing if not a.startswith("torch-")]
    start_load = load_average()
    peaks = measure_peaks(spec, config.threads)  # a few seconds, once per run, before the rows (same conditions)
    rows = run_sweep(plan, config, progress)
    apply_roofline(rows, spec, peaks, artifacts)
    conditions = {"load_average_start": start_load, "load_average_end": load_average(), "logical_cores": os.cpu_count()}
    return BenchReport(model=spec.name, environment=environment(), weights=weights, config=config.to_dict(), rows=rows,
                       conditions=conditions, peaks=peaks)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
