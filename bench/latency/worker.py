"""One benchmark row in its own process: `python -m vitship.bench.latency.worker JOB.json RESULT.json`.

A fresh process per (artifact, target, batch, variant) keeps the peak RSS clean (nothing else was
loaded into it) and turns a crashing runtime (segfault, abort, OOM kill) into an `error: ...` row
instead of the end of the sweep. The job and the result travel as JSON files; stdout and stderr
are kept only to explain a failure.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.latency.timing import NS_PER_MS, BenchRow, LatencyStats, TimingOptions, measure

DEFAULT_OPENER = "vitship.runtimes:open_session"
LOG_TAIL_CHARS = 2000


@dataclass
class RowJob:
    """Everything a worker needs to measure one row; JSON-serialisable.

    ``opener`` names a ``module:function``. The default opens a real runtime session; any other is
    called as ``function(job) -> session`` (tests register fake sessions this way).
    """

    artifact: dict  # exporters.Artifact.to_dict(), or the torch pseudo-artifact
    model_dir: str
    target: str
    batch: int
    variant: str
    knobs: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # models.ModelSpec.to_dict(): input shape and preprocessing
    timing: dict = field(default_factory=lambda: TimingOptions().to_dict())
    opener: str = DEFAULT_OPENER
    input_path: str = ""  # a .npy batch prepared by the parent, so the worker need not import models/torch

    @property
    def artifact_id(self) -> str:
        return self.artifact.get("id", "?")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RowJob":
        return cls(**data)


def _session_options(knobs: dict, batch: int):
    """vitship.runtimes.SessionOptions from the row's knobs (only the fields the class declares)."""
    from vitship.runtimes import SessionOptions

    names = {f.name for f in dataclasses.fields(SessionOptions)}
    static = {"static_batch": batch} if knobs.get("openvino_shape") == "static" else {}
    return SessionOptions(**{k: v for k, v in knobs.items() if k in names}, **static)


def _open(job: RowJob):
    module_name, _, function_name = job.opener.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if job.opener != DEFAULT_OPENER:
        return function(job)
    from vitship.exporters.base import Artifact

    return function(Artifact.from_dict(job.artifact), Path(job.model_dir), job.target, _session_options(job.knobs, job.batch))


def input_batch(job: RowJob):
    """A real sample photo, preprocessed as the model expects, repeated to the row's batch size."""
    import numpy as np

    if job.input_path:
        return np.load(job.input_path)
    from vitship.models import ModelSpec, preprocess, sample_images

    spec = ModelSpec.from_dict(job.spec) if job.spec else ModelSpec()
    image = preprocess(sample_images(limit=1)[0], spec)
    return np.ascontiguousarray(np.repeat(image, job.batch, axis=0))


def _sync_for(target: str):
    """The device synchronisation to run before each clock read (CUDA kernels are asynchronous)."""
    if target.startswith("torch:cuda"):
        import torch

        return torch.cuda.synchronize
    return None


def _timed_call(session, batch, job: RowJob):
    """The call to time, and where its input lives.

    On torch:cuda the batch is uploaded once and stays on the device, as GPU benchmarks (timm's) measure;
    host<->device copies of a 64-image fp32 batch would otherwise dominate. Elsewhere the session's own
    run(batch) is timed, host copies included, since that is what an application calls.
    """
    if not job.target.startswith("torch:cuda"):
        return (lambda: session.run(batch)), "host"
    import torch

    mark_step = torch.compiler.cudagraph_mark_step_begin if job.knobs.get("torch_variant") == "cudagraphs" else (lambda: None)
    if hasattr(session, "prepare") and hasattr(session, "run_prepared"):
        prepared = session.prepare(batch)

        def call():
            mark_step()
            return session.run_prepared(prepared)
        return call, "device-resident"
    # TODO(runtimes): give TorchSession prepare(batch) -> device input and run_prepared(input) so the bench
    # need not reach into it; until then use its public model/device/dtype attributes.
    pixels = torch.from_numpy(batch).to(session.device, session.dtype)

    def forward():
        mark_step()
        with torch.inference_mode():
            return session.model(pixels)
    return forward, "device-resident"


def _rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


def _peak_rss_mb() -> float:
    """This process's peak resident set. On Linux, VmHWM: getrusage's ru_maxrss survives fork+exec and would
    report the parent's (torch-laden) RSS for a child that never used that much."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run_job(job: RowJob) -> dict:
    """Measure one row in this process; returns the JSON result (status, stats, session info)."""
    timing = TimingOptions(**job.timing)
    batch = input_batch(job)
    importlib.import_module(job.opener.partition(":")[0])  # imports are not the session's memory
    rss_before = _rss_mb()
    start = time.perf_counter_ns()
    session = _open(job)
    load_s = (time.perf_counter_ns() - start) / 1e9
    try:
        call, io = _timed_call(session, batch, job)
        got = measure(call, timing, sync=_sync_for(job.target))
        info = session.info.to_dict() if getattr(session, "info", None) is not None else {}
        info["bench_input"] = io
    finally:
        session.close()
    stats = LatencyStats.from_samples(
        got.samples_ns, batch=job.batch, load_s=load_s, first_inference_ms=got.first_ns / NS_PER_MS,
        warmup_iterations=got.warmup_iterations, peak_rss_mb=_peak_rss_mb(), rss_before_load_mb=rss_before,
        artifact_size_bytes=job.artifact.get("size_bytes") or None,
    )
    return {"status": "ok", "stats": stats.to_dict(), "session": info}


def main(argv: list[str] | None = None) -> int:
    job_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    job = RowJob.from_dict(json.loads(Path(job_path).read_text()))
    try:
        result = run_job(job)
    except Exception as err:  # the row fails, the sweep goes on: report why
        result = {"status": f"error: {type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    Path(result_path).write_text(json.dumps(result))
    return 0 if result["status"] == "ok" else 1


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a result"


def _last_line(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _spawn(job_path: Path, result_path: Path, log_path: Path, timeout_s: float) -> tuple[int, bool, int]:
    """Run the worker in its own session (so a timeout also ends its children, e.g. torch.compile's pool)."""
    command = [sys.executable, "-P", "-m", "vitship.bench.latency.worker", str(job_path), str(result_path)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout_s), False, process.pid
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return process.wait(), True, process.pid


def run_in_subprocess(job: RowJob, timeout_s: float = 900.0) -> BenchRow:
    """Measure ``job`` in a fresh worker process; a crash or timeout becomes an ``error: ...`` row."""
    row = BenchRow(artifact=job.artifact_id, target=job.target, batch=job.batch, variant=job.variant, knobs=dict(job.knobs))
    with tempfile.TemporaryDirectory(prefix="vitship-bench-") as tmp:
        job_path, result_path, log_path = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "worker.log")
        if not job.input_path:
            import numpy as np

            np.save(Path(tmp, "input.npy"), input_batch(job))
            job = dataclasses.replace(job, input_path=str(Path(tmp, "input.npy")))
        job_path.write_text(json.dumps(job.to_dict()))
        start = time.perf_counter()
        code, timed_out, pid = _spawn(job_path, result_path, log_path, timeout_s)
        row.worker = {"pid": pid, "exit_code": code, "seconds": round(time.perf_counter() - start, 3)}
        log_text = log_path.read_text(errors="replace")
        if timed_out:
            row.status = f"error: timed out after {timeout_s:.0f} s"
        elif result_path.exists():
            result = json.loads(result_path.read_text())
            row.status, row.session = result["status"], result.get("session", {})
            row.stats = LatencyStats.from_dict(result["stats"]) if result.get("stats") else None
            if result.get("traceback"):
                row.worker["traceback"] = result["traceback"][-LOG_TAIL_CHARS:]
        else:
            last = _last_line(log_text)
            row.status = f"error: {_describe_exit(code)}" + (f" ({last})" if last else "")
        if not row.ok:
            row.worker["log_tail"] = log_text[-LOG_TAIL_CHARS:]
    return row


if __name__ == "__main__":
    sys.exit(main())
