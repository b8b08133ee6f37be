"""Export worker processes: ``export_all(..., jobs=2)`` builds two formats at a time.

Most of an export is single-threaded Python (tracing, the converters' graph passes), so on a 2-core machine
one export leaves a core idle. Each worker is a spawned process that holds its own copy of the model, the
int8 gate and a TraceCache (one format's precisions go to one worker, so its fp32 trace is still shared).
It only fills the temporary folder it is given and returns the Artifact: the parent keeps the export lock,
the manifest and every swap (pipeline.py), exactly as in a serial run.

A worker ignores SIGINT: Ctrl-C reaches the whole process group, and the parent decides (the first stops
after the current artifacts, the second aborts them: ``close`` kills the workers, their temporaries go).
A worker that dies (killed, out of memory) fails its artifact with its exit code; the others go on.
"""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from vitship.exporters.base import Artifact, ExportError, ExportOptions
from vitship.exporters.int8.ladder import Int8GateFailed
from vitship.models.status import Status

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 10.0  # how long a worker asked to stop may take before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ExportWorkerError(ExportError):
    """An export worker process stopped before it answered (killed, out of memory, or closed mid-export)."""


class WorkerFailure(Exception):
    """An exporter's own exception in a worker: its class name, message and traceback, as the parent reports them."""

    def __init__(self, name: str, message: str, trace: str):
        super().__init__(message)
        self.name, self.trace = name, trace


class ExportWorker:
    """One spawned process that exports artifacts into the folders it is given, one request at a time.

    Args:
        loaded: the model (pickled to the worker once, with the gate: a gate that closes over it shares it).
        gate: the pipeline's gate (an Int8Gate whose functions pickle, or False).
        setup: called first in the worker (e.g. the CLI's quiet-backends switch); must pickle, or None.

    The worker's ``vitship`` log records come back over the same pipe, to this process's loggers of that name.
    """

    def __init__(self, loaded, gate, setup: Callable[[], None] | None = None):
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's thread pools
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, os.getpid(), loaded, gate, setup),
                                        name="vitship-export-worker", daemon=True)
        self._process.start()
        child.close()

    def build(self, fmt: str, options: ExportOptions, tmp: Path) -> Artifact:
        """Export ``fmt`` with ``options`` into ``tmp`` in the worker; its error is raised here."""
        try:
            self._conn.send((fmt, options, str(tmp)))
            kind, payload = self._answer()
        except (EOFError, OSError) as err:
            self._process.join(timeout=1.0)
            raise ExportWorkerError(f"{fmt}-{options.precision}: the export worker stopped before it answered "
                                    f"(exit code {self._process.exitcode}: killed or out of memory?)") from err
        if kind == Status.OK:
            return payload
        if kind == Status.FAIL:
            message, record = payload
            raise Int8GateFailed(message, record)
        name, message, is_export_error, trace = payload
        raise ExportError(message) if is_export_error else WorkerFailure(name, message, trace)

    def _answer(self) -> tuple[str, object]:
        """The worker's next message that is not a log record (those go to this process's loggers)."""
        while True:
            kind, payload = self._conn.recv()
            if kind != "log":
                return kind, payload
            logger = logging.getLogger(payload.name)
            if logger.isEnabledFor(payload.levelno):
                logger.handle(payload)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def kill(self) -> None:
        """Stop the worker now (its current export is abandoned; the parent removes the temporary folder)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=CLOSE_WAIT_S)

    def close(self) -> None:
        """Ask the worker to finish, and kill it if it does not within CLOSE_WAIT_S."""
        try:
            self._conn.send(None)
            self._answer()  # its last log records, then the pipe closes: EOFError
        except (EOFError, OSError, ValueError):
            pass
        self._process.join(timeout=CLOSE_WAIT_S)
        self.kill()
        self._conn.close()


def export_in_workers(jobs: int, groups: list[list[tuple[int, str, str]]], export_one: Callable,
                      start_worker: Callable[[], ExportWorker]) -> dict:
    """Run every group (one format's (index, format, precision) requests, in order) on the first free of ``jobs``
    lanes; each lane's worker process starts when the lane first has something to build.

    ``export_one(format, precision, None, worker)`` makes one result (``worker()``: the lane's worker). An
    exception in a lane (the CLI's KeyboardInterrupt at an artifact's start, on a first Ctrl-C) stops every lane
    after its current artifact, and is raised here; an exception here (a second Ctrl-C) kills the workers at once.
    Returns the results by index.
    """
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for group in groups:
        pending.put(group)
    results, raised, workers, stop = {}, [], [], threading.Event()

    def lane() -> None:
        mine: list[ExportWorker] = []

        def worker() -> ExportWorker:  # a new one after a worker died: one crash fails one artifact
            if not mine or not mine[-1].alive:
                mine.append(start_worker())
                workers.append(mine[-1])
            return mine[-1]

        try:
            while not stop.is_set():
                try:
                    group = pending.get_nowait()
                except queue.Empty:
                    return
                for index, fmt, precision in group:
                    if stop.is_set():
                        return
                    results[index] = export_one(fmt, precision, None, worker)
        except BaseException as err:  # noqa: BLE001 (handed to the main thread, which raises it)
            raised.append(err)
            stop.set()

    lanes = [threading.Thread(target=lane, name=f"vitship-export-lane-{n}", daemon=True) for n in range(jobs)]
    try:
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
    except BaseException:
        stop.set()
        for worker in workers[:]:
            worker.kill()  # their lanes' builds fail at once and remove their temporary folders
        for thread in lanes:
            thread.join()
        raise
    finally:
        for worker in workers[:]:
            worker.close()
    if raised:
        raise raised[0]
    return results


def _serve(conn, parent: int, loaded, gate, setup) -> None:
    """The worker's loop: (format, options, folder) in, (Status.OK, Artifact), (Status.FAIL, the ladder's
    record) or (Status.ERROR, the exception) out, log records in between; None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    _thread_lock_for_tqdm()
    vitship_log = logging.getLogger("vitship")
    vitship_log.addHandler(logging.handlers.QueueHandler(_PipeQueue(conn)))  # prepares each record to pickle
    vitship_log.propagate = False
    vitship_log.setLevel(logging.INFO)
    if setup is not None:
        setup()
    from vitship.exporters.base import TraceCache
    from vitship.exporters.pipeline import fill_folder

    cache = TraceCache()
    while (request := conn.recv()) is not None:
        fmt, options, tmp = request
        try:
            answer = (Status.OK, fill_folder(loaded, Path(tmp), fmt, options, cache, gate))
        except Int8GateFailed as err:
            answer = (Status.FAIL, (str(err), err.record))
        except Exception as err:  # noqa: BLE001 (the parent makes it the artifact's error row)
            answer = (Status.ERROR, (type(err).__name__, str(err), isinstance(err, ExportError), traceback.format_exc()))
        conn.send(answer)


def _die_with_parent(parent: int) -> None:
    """On Linux, have the kernel kill this worker when its parent dies (a killed export leaves no orphan writing
    into a temporary folder that the next run clears); elsewhere the closed pipe ends it after its artifact."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _thread_lock_for_tqdm() -> None:
    """tqdm (torch.export's interpreter draws a bar) makes a multiprocessing lock in each process; a spawned
    worker's would outlive it and the resource tracker would warn about a leaked semaphore when vitship exits.
    One process draws here, so a thread lock does."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


class _PipeQueue:
    """What QueueHandler puts records in: the worker's pipe, as ("log", record) messages."""

    def __init__(self, conn):
        self._conn, self._lock = conn, threading.Lock()

    def put_nowait(self, record: logging.LogRecord) -> None:
        with self._lock:  # a library may log from another thread
            self._conn.send(("log", record))
