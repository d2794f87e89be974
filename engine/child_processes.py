"""Child processes that die with the process that started them (``kill -9`` included).

The child asks the kernel for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``).
The kernel means the parent *thread*: start children from a thread that lives as long
as the interpreter (the main thread, or a dedicated spawner thread). A parent that died
before the request took effect is caught by ``getppid``. Linux only; elsewhere nothing
ties the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up here, in the parent: a forked child must not load libraries (locks held
# by other threads at fork time would deadlock it). None off Linux.
_prctl = getattr(ctypes.CDLL(None), "prctl", None)


def dies_with(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that ties the child to ``parent_pid``.

    It runs in the forked child before ``exec``, where only async-signal-safe work is
    safe: one system call through the pre-loaded ``prctl``, no imports, no locks."""
    prctl, kill = _prctl, int(signal.SIGKILL)
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), kill)

    return preexec


def die_with_parent(parent_pid: int) -> None:
    """Tie the calling (already started) process to ``parent_pid``: for a
    ``multiprocessing`` worker's initializer."""
    tie = dies_with(parent_pid)
    if tie is not None:
        tie()
