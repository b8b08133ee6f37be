"""One row of work in its own process: ``python -P -m <worker module> JOB.json RESULT.json``.

Parity and latency both run each row in a fresh worker, so that a runtime that crashes (segfault,
abort, OOM kill) or hangs marks its own row and the run goes on and writes its results. ``-P`` keeps
the user's current folder off ``sys.path``: a project with its own ``models/`` or ``bench/`` package
cannot shadow vitship's. The job and the result travel as JSON files; the worker's stdout and stderr
go to a log that is kept only to explain a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

LOG_TAIL_CHARS = 2000
RAISED = "raised"  # the result key of a worker whose work raised: "Type: message"


@dataclass
class WorkerRun:
    """What came back from one worker: its result (None if it wrote none) and how it ended."""

    result: dict | None
    exit_code: int
    timed_out: bool
    pid: int
    seconds: float
    log: str

    def failure(self, timeout_s: float) -> str:
        """Why there is no result, in one line: what the work raised, a timeout, a signal, or an exit without a result."""
        if self.result and self.result.get(RAISED):
            return self.result[RAISED]
        if self.timed_out:
            return f"timed out after {timeout_s:.0f} s"
        last = _last_line(self.log)
        return _describe_exit(self.exit_code) + (f" ({last})" if last else "")

    def record(self) -> dict:
        """The worker facts a result row keeps: pid, exit code, seconds, and the log tail when it failed."""
        record = {"pid": self.pid, "exit_code": self.exit_code, "seconds": round(self.seconds, 3)}
        if self.result is None or self.exit_code != 0:
            record["log_tail"] = self.log[-LOG_TAIL_CHARS:]
        if self.result and self.result.get("traceback"):
            record["traceback"] = self.result["traceback"][-LOG_TAIL_CHARS:]
        return record


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


def _spawn(module: str, job_path: Path, result_path: Path, log_path: Path, timeout_s: float,
           env: dict[str, str] | None = None) -> tuple[int, bool, int]:
    """Run the worker in its own session (so a timeout also ends its children, e.g. torch.compile's pool)."""
    command = [sys.executable, "-P", "-m", module, str(job_path), str(result_path)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, **env} if env else None)
        try:
            return process.wait(timeout=timeout_s), False, process.pid
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return process.wait(), True, process.pid


def run_worker(module: str, job: dict, timeout_s: float, env: dict[str, str] | None = None) -> WorkerRun:
    """Run ``python -P -m module`` on ``job`` (``env``: added to the worker's environment) and collect what it wrote;
    never raises for the worker's failure."""
    with tempfile.TemporaryDirectory(prefix="vitship-worker-") as tmp:
        job_path, result_path, log_path = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "worker.log")
        job_path.write_text(json.dumps(job))
        start = time.perf_counter()
        code, timed_out, pid = _spawn(module, job_path, result_path, log_path, timeout_s, env)
        seconds = time.perf_counter() - start
        result = json.loads(result_path.read_text()) if result_path.exists() and not timed_out else None
        return WorkerRun(result, code, timed_out, pid, seconds, log_path.read_text(errors="replace"))


def worker_main(work: Callable[[dict], dict], argv: list[str] | None = None) -> int:
    """A worker's ``main``: read the job, run ``work(job)``, write its result (or the error that stopped it).

    An exception becomes ``{RAISED: "Type: message", "traceback": ...}`` so that the parent can tell
    a row that raised from a worker that died (``WorkerRun.failure`` says which); exit code 0 means the work returned.
    """
    job_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    job = json.loads(Path(job_path).read_text())
    try:
        result, code = work(job), 0
    except Exception as err:  # the row fails, the run goes on: report why
        result, code = {RAISED: f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}, 1
    Path(result_path).write_text(json.dumps(result))
    return code
