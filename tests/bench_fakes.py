"""Fake sessions for the bench worker tests (imported by the worker process through PYTHONPATH).

Each ``open_*`` is a ``RowJob.opener``: ``open_*(job) -> session``. The job's knobs steer them.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np


class _Info:
    def __init__(self, target: str):
        self.target = target

    def to_dict(self) -> dict:
        return {"target": self.target, "provider": "fake", "device": "cpu", "precision": "fp32", "threads": 1}


class SleepSession:
    """Sleeps a known time per call, like a model with a fixed latency."""

    def __init__(self, seconds: float, target: str = "fake:cpu"):
        self.seconds = seconds
        self.info = _Info(target)
        self.closed = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.zeros((batch.shape[0], 1), dtype=np.float32)

    def close(self) -> None:
        self.closed = True


class SegfaultSession(SleepSession):
    """Opens fine, then dies with SIGSEGV on the first call (a crashing native runtime)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)  # never reached
        return super().run(batch)


def open_sleep(job):
    return SleepSession(float(job.knobs.get("sleep_s", 0.02)), job.target)


def open_segfault(job):
    return SegfaultSession(0.0, job.target)


def open_hard_exit(job):
    os._exit(7)


def open_raise(job):
    raise RuntimeError("fake runtime refused the model")
