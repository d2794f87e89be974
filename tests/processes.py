"""Helpers for tests that run the engine as a real subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.paths import ROOT


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# Set to a fresh id by each test session; every process it starts inherits it, so its
# processes are found even once orphaned, and another session's never are.
SESSION_MARKER = "TRADE_ENGINE_TEST_SESSION"
# Python's own helpers (multiprocessing's resource tracker, joblib's workers): each
# exits with the process that started it, so one still there at the end is no leak.
RUNTIME_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "loky")


def mark_session() -> str:
    """Give this process (and so every process it starts from now on) a new marker."""
    marker = uuid.uuid4().hex
    os.environ[SESSION_MARKER] = marker
    return marker


def session_leftovers(marker: str) -> dict[int, str]:
    """Running processes this test session started, pid → what they are: this process's
    descendants (Python's helpers aside) and, anywhere on the machine, the processes
    whose environment carries ``marker`` — orphans whose parent is gone."""
    me = psutil.Process()
    descendants = {child.pid: child for child in me.children(recursive=True)}
    found: dict[int, str] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == me.pid or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(proc.cmdline())[:200] or proc.name()
            if proc.pid in descendants:
                if not any(helper in command for helper in RUNTIME_HELPERS):
                    found[proc.pid] = f"{command} (child of pid {proc.ppid()})"
            elif proc.environ().get(SESSION_MARKER) == marker:
                found[proc.pid] = f"{command} (orphan: its parent is gone)"
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held (polling), or fail naming ``what``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def write_config(path: Path, base: Path = ROOT / "config" / "engine.yaml", **changes: Any) -> Path:
    """Copy an engine config, overriding top-level sections (merged one level deep)."""
    data = yaml.safe_load(base.read_text()) or {}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class EngineProcess:
    """`python -m engine ...` in its own process group, its JSON log lines collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._spawn([sys.executable, "-m", "engine", *args], env)

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)

    def wait_for_log(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first JSON log record whose ``event`` is ``event`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            record = _parse(line)
            if record.get("event") == event:
                return record
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            record = _parse(line)
            if record.get("event") == event:
                return record
        raise AssertionError(f"no {event!r} log line; output so far:\n{''.join(self.lines)}")

    def records(self) -> list[dict[str, Any]]:
        return [r for r in map(_parse, self.lines) if r]

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout=2)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _parse(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


class MakeRunProcess(EngineProcess):
    """`make run CONFIG=...`, signalled as a terminal would: the whole process group."""

    def __init__(self, config: Path) -> None:
        self._spawn(["make", "--no-print-directory", "run", f"CONFIG={config}"])

    def send(self, signum: signal.Signals) -> None:
        os.killpg(self.proc.pid, signum)


def metric_value(port: int, series: str) -> float:
    """The value of one series (name and labels as /metrics prints them), 0 if absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def open_fds(pid: int) -> int:
    """File descriptors ``pid`` holds now."""
    return len(os.listdir(f"/proc/{pid}/fd"))
