"""Backend logs stay hidden unless the user asks for them (``--debug``, which sets VITSHIP_DEBUG=1).

Native runtimes write diagnostics straight to file descriptor 2, past Python's logging: ExecuTorch's
threadpool prints five ``[cpuinfo_utils.cpp:...]`` lines the first time it starts, and importing its
runtime logs a torch pytree deprecation warning. ``quiet_stderr()`` points fd 2 at /dev/null around such
calls, so a command's own output is all the user sees; errors still arrive as Python exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

DEBUG_ENV = "VITSHIP_DEBUG"


def debug_enabled() -> bool:
    """True when VITSHIP_DEBUG is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Discard what native code and Python write to stderr inside the block, unless debugging is on."""
    with quiet_fds(2):
        yield


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Discard stdout and stderr inside the block (a converter's own progress lines), unless debugging is on."""
    with quiet_fds(1, 2):
        yield


@contextlib.contextmanager
def quiet_fds(*fds: int) -> Iterator[None]:
    """Point each of ``fds`` at /dev/null inside the block (Python's streams flushed first), unless debugging is on."""
    if debug_enabled():
        yield
        return
    try:
        _flush()
        saved = [(fd, os.dup(fd)) for fd in fds]
    except (OSError, ValueError):  # no usable descriptor (a closed or replaced stream): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            for fd in fds:
                os.dup2(devnull.fileno(), fd)
        yield
    finally:
        _flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()

def silence_exit_logs() -> None:
    """At exit (atexit), point fd 2 at /dev/null for the native destructors that log after Python is done.

    Registered by runtimes whose native objects log their own teardown (LiteRT's accelerator registry); it runs
    after the command has printed everything, and not at all with VITSHIP_DEBUG=1.
    """
    if debug_enabled():
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
