"""Latency measurement: LatencyStats from raw samples, the timing loop, and one benchmark row.

Throughput is defined as ``batch * iterations / total measured time``, where the total measured time
is the sum of the timed iterations (warm-up and first inference excluded). It is therefore the
sustained rate of back-to-back synchronous calls, not ``batch / p50``; the two agree when the
latency is stable and differ (honestly) when it is not.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vitship.bench.rows import RowKey, StatusRow, known_fields
from vitship.models.status import Status

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class TimingOptions:
    """How long to warm up and how many iterations to time (time-based, with a minimum count)."""

    min_time_s: float = 3.0
    warmup_s: float = 1.0
    min_iterations: int = 5
    max_iterations: int = 100_000

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class LatencyStats:
    """Latency statistics of one (artifact, target, batch, variant), derived from the raw samples.

    ``samples_ns`` are per-call wall times in nanoseconds; everything in milliseconds is derived
    from them by ``from_samples`` (percentiles use numpy's default linear interpolation, stdev is
    the sample standard deviation, CV = stdev / mean).
    """

    batch: int
    samples_ns: list[int]
    iterations: int = 0
    total_s: float = 0.0
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    stdev_ms: float = math.nan
    min_ms: float = math.nan
    max_ms: float = math.nan
    cv: float = math.nan
    throughput_ips: float = math.nan
    load_s: float | None = None
    first_inference_ms: float | None = None
    warmup_iterations: int = 0
    peak_rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    artifact_size_bytes: int | None = None

    @classmethod
    def from_samples(cls, samples_ns: list[int], batch: int = 1, **extras) -> "LatencyStats":
        """Statistics of ``samples_ns``; ``extras`` fill load time, first inference, RSS and size."""
        if not samples_ns:
            raise ValueError("LatencyStats needs at least one sample")
        samples = [int(s) for s in samples_ns]
        ms = np.asarray(samples, dtype=np.float64) / NS_PER_MS
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        mean = statistics.fmean(ms)
        stdev = statistics.stdev(ms) if len(ms) > 1 else 0.0
        total_s = sum(samples) / NS_PER_S
        return cls(
            batch=batch, samples_ns=samples, iterations=len(samples), total_s=total_s,
            p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=mean, stdev_ms=stdev,
            min_ms=float(ms.min()), max_ms=float(ms.max()), cv=stdev / mean if mean > 0 else math.nan,
            throughput_ips=batch * len(samples) / total_s if total_s > 0 else math.nan, **extras,
        )

    def to_dict(self, samples: bool = True) -> dict:
        data = dataclasses.asdict(self)
        if not samples:
            data.pop("samples_ns")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyStats":
        return cls(**known_fields(cls, data))


@dataclass
class Measurement:
    """What the timing loop saw: the first call, the warm-up count and the timed samples."""

    first_ns: int
    warmup_iterations: int
    samples_ns: list[int] = field(default_factory=list)


def measure(call: Callable[[], object], timing: TimingOptions, sync: Callable[[], None] | None = None,
            clock: Callable[[], int] = time.perf_counter_ns) -> Measurement:
    """Time ``call``: one first inference, a time-based warm-up, then iterations until ``min_time_s``.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs after every call and before the clock is read,
    so asynchronous devices are timed to completion.
    """
    sync = sync or (lambda: None)
    start = clock()
    call()
    sync()
    first_ns = clock() - start

    warmup_ns, warmup_iterations = int(timing.warmup_s * NS_PER_S), 0
    warm_start = clock()
    while clock() - warm_start < warmup_ns:
        call()
        sync()
        warmup_iterations += 1

    min_ns, samples, elapsed = int(timing.min_time_s * NS_PER_S), [], 0
    while (elapsed < min_ns or len(samples) < timing.min_iterations) and len(samples) < timing.max_iterations:
        t0 = clock()
        call()
        sync()
        sample = clock() - t0
        samples.append(sample)
        elapsed += sample
    return Measurement(first_ns=first_ns, warmup_iterations=warmup_iterations, samples_ns=samples)


@dataclass
class BenchRow(StatusRow):
    """One row of a benchmark: (artifact, target, batch, variant), its knobs, status and statistics.

    ``status`` is ok, error or unavailable, with the why in ``reason``; only ok rows carry stats.
    """

    artifact: str
    target: str
    batch: int | None
    variant: str
    knobs: dict = field(default_factory=dict)
    status: Status = Status.OK
    reason: str = ""
    stats: LatencyStats | None = None
    session: dict = field(default_factory=dict)  # SessionInfo.to_dict(): what actually ran
    worker: dict = field(default_factory=dict)  # pid, exit code, wall seconds, log tail on error
    speedup: float | None = None  # baseline p50 / this p50, filled by the report
    baseline: str | None = None  # the row the speedup is against
    roofline: dict | None = None  # achieved GFLOP/s and % of the attainable peak (bench.latency.roofline.row_roofline)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def key(self) -> RowKey:
        return RowKey(self.artifact, self.target, self.variant, self.batch)

    def to_dict(self, samples: bool = True) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["status"] = str(self.status)
        data["stats"] = self.stats.to_dict(samples) if self.stats else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "BenchRow":
        row = cls(**known_fields(cls, {k: v for k, v in data.items() if k != "stats"}))
        row.stats = LatencyStats.from_dict(data["stats"]) if data.get("stats") else None
        return row
