"""The profile sweep: one worker per (artifact, target) the runtime's own profiler can read, an unavailable row for the rest.

The parent measures the roofline's peaks once (bench.latency.roofline.measure_peaks), reads the module plan
of the PyTorch model (parts.module_plan), prepares the input batch, then runs each row's worker in turn and
gives every op its part (attribute.py).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitship.bench.profile.results import ProfileReport, ProfileRow, profiled_row, unavailable_row
from vitship.bench.profile.worker import PROFILERS, ProfileJob, raw_from_dict, run_in_subprocess
from vitship.bench.rows import RowKey
from vitship.exporters.schema import Artifact
from vitship.models.status import Status

VARIANTS = {"onnxruntime:cpu": "opt=all", "openvino:CPU": "hint=latency,static", "torch:cpu": "eager"}  # bench's labels
NO_PROFILER = {
    "coreml": "Core ML reports no per-op times outside Xcode Instruments on a Mac; vitship profile has no reader for it",
    "openvino": "vitship profile reads OpenVINO's PERF_COUNT on the CPU plugin only",
    "onnxruntime": "vitship profile reads onnxruntime's profiling JSON on the CPU execution provider only",
    "litert": "vitship profile reads LiteRT's profiler on the CPU (XNNPACK) accelerator only",
    "torch": "vitship profile profiles torch eager on the CPU only",
}


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile and how long; recorded in profile.json."""

    batch: int = 1
    threads: int | None = None  # None: physical cores
    calls: int = 10  # profiled calls per row (each op's time is its mean over them)
    warmup: int = 3
    artifacts: tuple[str, ...] | None = None  # None: every artifact in the manifest, plus torch-fp32
    targets: tuple[str, ...] | None = None  # None: every target
    row_timeout_s: float = 900.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Plan:
    jobs: list[tuple[RowKey, ProfileJob]]
    unavailable: list[ProfileRow]


def _reason(target: str, status) -> str:
    if not status.available:
        return status.reason
    return NO_PROFILER.get(target.split(":", 1)[0], f"vitship profile has no profiler for {target}") + (
        f" (it profiles {', '.join(PROFILERS)})")


def plan_rows(artifacts, model_dir: Path, config: ProfileConfig, input_path: str) -> Plan:
    """A job per artifact on each target in PROFILERS that runs its format; an unavailable row for every other target."""
    from vitship.models import UnknownNameError
    from vitship.runtimes import available_targets, can_run

    plan = Plan([], [])
    wanted = set(config.artifacts) if config.artifacts else None
    statuses = available_targets()
    for name in sorted(set(config.targets or ()) - {s.target for s in statuses}):
        raise UnknownNameError("target", name, [s.target for s in statuses])
    for artifact_id in sorted((wanted or set()) - {a.id for a in artifacts}):
        plan.unavailable.append(unavailable_row(RowKey(artifact_id, "-", "", config.batch),
                                                "not in the manifest; export it first (vitship export)"))
    for status in statuses:
        if config.targets is not None and status.target not in config.targets:
            continue
        runnable = [a for a in artifacts if can_run(status.target, a.format) and (wanted is None or a.id in wanted)]
        for artifact in runnable:
            key = RowKey(artifact.id, status.target, VARIANTS.get(status.target, ""), config.batch)
            if status.target not in PROFILERS or not status.available:
                plan.unavailable.append(unavailable_row(key, _reason(status.target, status)))
                continue
            knobs = {"static_batch": config.batch} if status.target.startswith("openvino:") else {}
            plan.jobs.append((key, ProfileJob(artifact.to_dict(), str(model_dir), status.target, config.batch,
                                              config.threads, config.calls, config.warmup, input_path, knobs)))
    return plan


ProgressFn = Callable[[int, int, RowKey, ProfileRow | None], None]


def _run_row(key: RowKey, job: ProfileJob, config: ProfileConfig, spec, plan, peaks: dict) -> ProfileRow:
    from vitship.bench.profile.attribute import attribute

    run = run_in_subprocess(job, config.row_timeout_s)
    result = run.result or {}
    if "raw" not in result:
        error = run.failure(config.row_timeout_s)  # what the work raised, a timeout or a crash
        unavailable = error.startswith("RuntimeUnavailable: ")
        return unavailable_row(key, error.removeprefix("RuntimeUnavailable: "),
                               Status.UNAVAILABLE if unavailable else Status.ERROR, run.record())
    raw = raw_from_dict(result["raw"])
    notes = attribute(raw.ops, plan)
    form = Artifact.from_dict(job.artifact).details.form()  # the work the artifact computes (torch-fp32: timm's)
    row = profiled_row(key, raw, spec, config.batch, peaks, result.get("unprofiled_ms"), notes, form)
    row.worker = run.record()
    return row


def run_profile(model_dir: Path, spec, weights_source: str, config: ProfileConfig,
                progress: ProgressFn | None = None) -> ProfileReport:
    """Plan and run every row; returns the ProfileReport (not yet written)."""
    import numpy as np

    from vitship.bench.environment import environment
    from vitship.bench.latency.roofline import measure_peaks
    from vitship.bench.latency.sweep import bench_artifacts, load_average
    from vitship.bench.profile.parts import model_plan
    from vitship.models import preprocess, sample_images
    from vitship.runtimes import physical_cores

    config = dataclasses.replace(config, threads=config.threads or physical_cores())
    artifacts, weights = bench_artifacts(model_dir, spec, weights_source)
    image = preprocess(sample_images(limit=1)[0], spec)
    rows: list[ProfileRow] = []
    with tempfile.TemporaryDirectory(prefix="vitship-profile-") as tmp:
        input_path = str(Path(tmp) / "input.npy")
        planned = plan_rows(artifacts, model_dir, config, input_path)  # an unknown target is refused before any work
        np.save(input_path, np.ascontiguousarray(np.repeat(image, config.batch, axis=0)))
        plan = model_plan(spec)
        start_load = load_average()
        peaks = measure_peaks(spec, config.threads)  # once per run, before the rows (the roofline's own peaks)
        for index, (key, job) in enumerate(planned.jobs):
            if progress:
                progress(index, len(planned.jobs), key, None)
            rows.append(_run_row(key, job, config, spec, plan, peaks))
            if progress:
                progress(index + 1, len(planned.jobs), key, rows[-1])
    conditions = {"load_average_start": start_load, "load_average_end": load_average(), "logical_cores": os.cpu_count()}
    return ProfileReport(spec.name, environment(), weights, config.to_dict(), peaks, conditions,
                         rows + planned.unavailable)
