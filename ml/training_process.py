"""Runs a function (a training run) in a spawned process that cancelling ends at once.

Training runs in its own process: it keeps the event loop free, and the thread pools
AutoGluon leaves behind made single-row inference ten times slower in the serving
process. A ``multiprocessing`` pool rather than a ``ProcessPoolExecutor``: a daemon
told to stop during start-up must not wait for a minute of training, and
``Pool.terminate`` ends a busy worker where an executor's shutdown waits for it. The
worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and it is
the daemon that decides what stops (and then terminates the worker); and it dies with
the daemon, ``kill -9`` included (:mod:`engine.child_processes`). Start it from the
event loop's thread (the main one): the tie is to the thread that started it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from engine.child_processes import die_with_parent

T = TypeVar("T")


def _worker_setup(parent_pid: int) -> None:
    """Ignore Ctrl-C (the daemon decides what stops) and die with the daemon: a killed
    daemon must not leave a training behind that registers a model later."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


async def run_in_spawned_process(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a fresh spawned process; its exception is raised here.

    Cancelling the caller terminates the process; no worker outlives the call.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, failed: bool) -> None:
        if outcome.done():  # cancelled meanwhile
            return
        if failed:
            outcome.set_exception(result)
        else:
            outcome.set_result(result)

    pool = mp.get_context("spawn").Pool(1, initializer=_worker_setup, initargs=(os.getpid(),))
    try:
        pool.apply_async(
            fn,
            args,
            kwargs,
            callback=lambda result: loop.call_soon_threadsafe(settle, result, False),
            error_callback=lambda exc: loop.call_soon_threadsafe(settle, exc, True),
        )
        return await outcome
    finally:
        pool.terminate()
        await asyncio.shield(asyncio.to_thread(pool.join))
