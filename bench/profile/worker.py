"""One profiled row in its own process: ``python -P -m vitship.bench.profile.worker JOB.json RESULT.json``.

As a bench row does (bench/latency/worker.py): a runtime that crashes or hangs marks its own row. The worker
first times the regular session (runtimes.open_session: the artifact's sha256 checked, the threads set as
the bench sets them), then runs the runtime's own profiler on the same artifact with the same batch.
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.isolated import run_worker, worker_main
from vitship.bench.profile.ops import OpTime, RawProfile

# target -> the module whose profile(path, batch, threads, calls, warmup) runs that runtime's own profiler
PROFILERS = {
    "openvino:CPU": "vitship.bench.profile.ov_profiler",
    "onnxruntime:cpu": "vitship.bench.profile.ort_profiler",
    "executorch:cpu": "vitship.bench.profile.et_profiler",
    "litert:cpu": "vitship.bench.profile.litert_profiler",
    "torch:cpu": "vitship.bench.profile.torch_profiler",
}


@dataclass
class ProfileJob:
    """Everything a worker needs to profile one row; JSON-serialisable."""

    artifact: dict  # exporters.Artifact.to_dict(), or the torch pseudo-artifact
    model_dir: str
    target: str
    batch: int
    threads: int
    calls: int
    warmup: int
    input_path: str  # the .npy batch the parent prepared
    knobs: dict = field(default_factory=dict)  # SessionOptions fields for the regular session

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def artifact_file(artifact, model_dir: Path) -> Path:
    """The file the runtime loads: the IR's .xml inside an OpenVINO folder, the artifact path otherwise."""
    path = Path(model_dir) / artifact.path
    return next(iter(sorted(path.glob("*.xml"))), path) if path.is_dir() else path


def _unprofiled(session, batch, calls: int, warmup: int) -> float:
    """p50 ms of the regular session (no profiler) over ``calls`` calls after ``warmup``."""
    for _ in range(warmup):
        session.run(batch)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        session.run(batch)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def run_job(job: ProfileJob) -> dict:
    """Profile one row in this process; returns the JSON result (the raw profile and the regular session's p50)."""
    import numpy as np

    from vitship.exporters.base import Artifact
    from vitship.runtimes import SessionOptions, open_session

    artifact, batch = Artifact.from_dict(job.artifact), np.load(job.input_path)
    options = SessionOptions(threads=job.threads, split_batches=False, **job.knobs)
    session = open_session(artifact, Path(job.model_dir), job.target, options)
    try:
        unprofiled = _unprofiled(session, batch, job.calls, job.warmup)
        info = session.info.to_dict()
        profiler = importlib.import_module(PROFILERS[job.target])
        if job.target.startswith("torch:"):
            raw = profiler.profile(session.model, batch, job.threads, job.calls, job.warmup)
        else:
            raw = profiler.profile(artifact_file(artifact, Path(job.model_dir)), batch, job.threads, job.calls, job.warmup)
    finally:
        session.close()
    raw.precision = raw.precision or info.get("precision") or artifact.precision
    return {"raw": raw_to_dict(raw), "unprofiled_ms": unprofiled, "session": info}


def raw_to_dict(raw: RawProfile) -> dict:
    return {**dataclasses.asdict(raw), "ops": [op.to_dict() for op in raw.ops]}


def raw_from_dict(data: dict) -> RawProfile:
    return RawProfile(**{**data, "ops": [OpTime(**op) for op in data["ops"]]})


def main(argv: list[str] | None = None) -> int:
    return worker_main(lambda job: run_job(ProfileJob(**job)), argv)


def run_in_subprocess(job: ProfileJob, timeout_s: float):
    """The worker's run (bench.isolated.WorkerRun): its result, or how it failed."""
    return run_worker("vitship.bench.profile.worker", job.to_dict(), timeout_s)


if __name__ == "__main__":
    sys.exit(main())
