"""Reading without hanging: blocking calls in daemon threads that a stop can abandon."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import textwrap
import time

import pytest

from engine.safe_files import in_daemon_thread

REQUEST = contextvars.ContextVar("request", default="none")


async def test_a_daemon_thread_call_returns_its_result_or_raises_with_the_callers_context():
    REQUEST.set("r-1")
    assert await in_daemon_thread(lambda a, b: (a + b, REQUEST.get()), 2, 3) == (5, "r-1")
    with pytest.raises(ZeroDivisionError):
        await in_daemon_thread(lambda: 1 / 0)


def test_a_call_stuck_in_a_daemon_thread_never_keeps_the_process_alive():
    """asyncio.to_thread's pool is joined at exit: a read stuck in a hung file system
    kept a stopped daemon alive. Abandoned in a daemon thread, it cannot."""
    program = textwrap.dedent(
        """
        import asyncio, threading
        from engine.safe_files import in_daemon_thread

        async def main():
            try:
                async with asyncio.timeout(0.2):
                    await in_daemon_thread(threading.Event().wait)  # never returns
            except TimeoutError:
                print("gave up")

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (0, "gave up\n"), result.stderr
    assert time.monotonic() - started < 10
