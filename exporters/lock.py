"""One export at a time per model folder: an flock'd lock file that records who holds it.

Two ``vitship export`` runs into the same folder would each clear the other's temporary folders and race
on the manifest. ``export_lock`` takes an exclusive ``fcntl.flock`` on ``<model dir>/.export.lock`` and
writes the holder (pid, host, start time) into it. A second run refuses with a one-line error naming that
pid, or polls for up to ``wait_s`` seconds first. The kernel drops an flock when its process dies (even on
SIGKILL), so a lock file left by a dead run is taken over without asking anyone to delete it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from vitship.exporters.base import ExportError

LOCK_NAME = ".export.lock"
POLL_S = 0.2


class FolderLockedError(ExportError):
    """Another export holds the model folder's lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a model folder's export lock."""

    pid: int
    host: str
    started: float  # time.time() when it took the lock

    @classmethod
    def me(cls) -> "LockHolder":
        return cls(os.getpid(), socket.gethostname(), time.time())

    @classmethod
    def parse(cls, text: str) -> "LockHolder | None":
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), float(data["started"]))
        except (ValueError, TypeError, KeyError):
            return None  # the holder is still writing it, or an older format

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on {self.host}, since {since}"


@contextmanager
def export_lock(model_dir: Path, wait_s: float = 0.0) -> Iterator[LockHolder]:
    """Hold ``model_dir``'s export lock for the ``with`` block; yields this process's LockHolder.

    Args:
        model_dir: the model folder (it must exist).
        wait_s: how long to wait for another export to finish; 0 refuses at once.
    Raises:
        FolderLockedError: another process holds the lock (after ``wait_s``); the message names its pid.
    """
    import fcntl

    path = Path(model_dir) / LOCK_NAME
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockHolder.parse(_read(fd))
            os.close(fd)
            if time.monotonic() >= deadline:
                raise FolderLockedError(_refusal(path, holder, wait_s)) from None
            time.sleep(POLL_S)
            continue
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file between our open and our flock: lock the new one
    me = LockHolder.me()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        yield me
    finally:
        path.unlink(missing_ok=True)  # before the unlock: whoever waits on this inode then retries on a new file
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return ""


def _refusal(path: Path, holder: LockHolder | None, wait_s: float) -> str:
    who = holder.describe() if holder else "another process"
    waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
    return (f"{path.parent}: another export ({who}) is writing this model folder{waited}; let it finish and rerun, "
            f"or export into another --out folder. The lock is {path}; it is released when that process ends")
