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
    if debug_enabled():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (a closed or replaced stderr): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
