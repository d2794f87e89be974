"""The spawned training process: results and errors come back; cancelling ends it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ml.training_process import run_in_spawned_process
from tests.processes import process_alive


def add(a: int, b: int, *, times: int = 1) -> tuple[int, int]:
    return (a + b) * times, os.getpid()


def refuse(message: str) -> None:
    raise ValueError(message)


def sleep_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


async def test_the_result_comes_back_from_another_process():
    value, pid = await run_in_spawned_process(add, 2, 3, times=4)
    assert value == 20
    assert pid != os.getpid()
    assert not process_alive(pid)  # no worker outlives the call


async def test_the_functions_exception_is_raised_in_the_caller():
    with pytest.raises(ValueError, match="no data"):
        await run_in_spawned_process(refuse, "no data")


async def test_cancelling_the_caller_terminates_a_busy_worker(tmp_path):
    pid_file = tmp_path / "pid"
    task = asyncio.ensure_future(run_in_spawned_process(sleep_forever, str(pid_file)))
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker never started"
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert not process_alive(pid)
