"""The suite's leak check (tests/conftest.py): which processes count as this session's."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import psutil
import pytest

from tests.processes import SESSION_MARKER, process_alive, session_leftovers, wait_until

pytestmark = pytest.mark.integration

# Starts `sleep` and exits at once: the sleep is orphaned, its environment inherited
# (its output detached, or `run` would wait for the sleep to close the pipe).
ORPHAN = "import subprocess as s; print(s.Popen(['sleep', '30'], stdout=s.DEVNULL).pid)"


def orphan(marker: str) -> int:
    env = {**os.environ, SESSION_MARKER: marker}
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN], env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    return int(done.stdout)


def test_a_child_and_an_orphan_of_this_session_are_found_and_another_sessions_are_not():
    marker = os.environ[SESSION_MARKER]
    child = subprocess.Popen(["sleep", "30"])
    ours, theirs = orphan(marker), orphan("another-session")
    try:
        found = session_leftovers(marker)
        assert f"(child of pid {os.getpid()})" in found[child.pid]
        assert found[ours] == "sleep 30 (orphan: its parent is gone)"
        assert theirs not in found  # another test run on this machine: not ours to judge
    finally:
        child.kill()
        child.wait(5)
        for pid in (ours, theirs):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(ours) and not process_alive(theirs), 5, "sleeps killed")
    assert not {child.pid, ours} & set(session_leftovers(marker))


def test_python_runtime_helpers_are_not_leaks():
    """multiprocessing's resource tracker runs until this process exits, by design."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(abs, -1).result() == 1
    helpers = [
        child.pid
        for child in psutil.Process().children()
        if "resource_tracker" in " ".join(child.cmdline())
    ]
    assert helpers
    assert not set(helpers) & set(session_leftovers(os.environ[SESSION_MARKER]))
