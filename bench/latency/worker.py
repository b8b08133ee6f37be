"""One benchmark row in its own process: `python -P -m vitship.bench.latency.worker JOB.json RESULT.json`.

A fresh process per (artifact, target, batch, variant) keeps the peak RSS clean (nothing else was
loaded into it) and turns a crashing runtime (segfault, abort, OOM kill) into an error row instead
of the end of the sweep (bench/isolated.py runs it).
"""

from __future__ import annotations

import dataclasses
import importlib
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.isolated import run_worker, worker_main
from vitship.bench.latency.timing import NS_PER_MS, BenchRow, LatencyStats, TimingOptions, measure
from vitship.models.status import Status

DEFAULT_OPENER = "vitship.runtimes:open_session"
BENCH_FRAME = (1080, 1920)  # (height, width) of the frame image-input rows are timed on: a full-HD camera frame


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
    # split_batches=False: a row times its own batch; one the artifact cannot take is unavailable, not split
    return SessionOptions(**{k: v for k, v in knobs.items() if k in names}, split_batches=False, **static)


def _open(job: RowJob):
    module_name, _, function_name = job.opener.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if job.opener != DEFAULT_OPENER:
        return function(job)
    from vitship.exporters.base import Artifact

    return function(Artifact.from_dict(job.artifact), Path(job.model_dir), job.target, _session_options(job.knobs, job.batch))


def input_batch(job: RowJob):
    """A real sample photo, preprocessed as the model expects, repeated to the row's batch size.

    An image-input artifact's row gets what an app hands it instead: the photo as one camera frame, 8-bit RGB at
    ``BENCH_FRAME`` (or the artifact's own fixed frame size), (1, height, width, 3).
    """
    import numpy as np

    if job.input_path:
        return np.load(job.input_path)
    from vitship.models import ModelSpec, load_image, preprocess, sample_images
    from vitship.runtimes.frames import takes_frames

    input_spec = job.artifact.get("input_spec") or {}
    if takes_frames(input_spec):
        fixed = input_spec.get("frame_size")
        height, width = fixed if isinstance(fixed, list) else BENCH_FRAME
        frame = load_image(sample_images(limit=1)[0]).resize((width, height))  # Pillow bicubic: a camera-sized frame
        return np.ascontiguousarray(np.asarray(frame)[None])

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
    if hasattr(session, "run_frames"):  # an image-input artifact: one decoded frame in, its own preprocessing timed
        if job.batch != 1:
            from vitship.runtimes import RuntimeUnavailable

            raise RuntimeUnavailable(f"batch {job.batch}: {job.artifact_id} takes one frame per call (an image-input "
                                     "artifact); its rows are per frame, at batch 1")
        frame = batch[0]
        return (lambda: session.run_frames([frame])), f"frame {frame.shape[1]}x{frame.shape[0]} uint8"
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
    """Measure one row in this process; returns the JSON result (stats and session info)."""
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
    return {"stats": stats.to_dict(), "session": info}


def main(argv: list[str] | None = None) -> int:
    return worker_main(lambda job: run_job(RowJob.from_dict(job)), argv)


def run_in_subprocess(job: RowJob, timeout_s: float = 900.0) -> BenchRow:
    """Measure ``job`` in a fresh worker process; a crash, a timeout or an exception becomes an error row."""
    row = BenchRow(artifact=job.artifact_id, target=job.target, batch=job.batch, variant=job.variant, knobs=dict(job.knobs))
    with tempfile.TemporaryDirectory(prefix="vitship-bench-") as tmp:
        if not job.input_path:
            import numpy as np

            np.save(Path(tmp, "input.npy"), input_batch(job))
            job = dataclasses.replace(job, input_path=str(Path(tmp, "input.npy")))
        run = run_worker("vitship.bench.latency.worker", job.to_dict(), timeout_s)
    row.worker, result = run.record(), run.result or {}
    if result.get("stats"):
        row.stats, row.session = LatencyStats.from_dict(result["stats"]), result.get("session", {})
    else:
        error = run.failure(timeout_s)
        unavailable = error.startswith("RuntimeUnavailable: ")  # the target cannot run this row here: not a failure
        row.status = Status.UNAVAILABLE if unavailable else Status.ERROR
        row.reason = error.removeprefix("RuntimeUnavailable: ")
    return row


if __name__ == "__main__":
    sys.exit(main())
