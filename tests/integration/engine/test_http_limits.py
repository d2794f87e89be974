"""Slow, vanishing and too many HTTP clients against the API: a real daemon over TCP.

The limits (engine/http_server.py): ``api.max_connections``, ``api.header_timeout_seconds``,
``api.body_timeout_seconds``; a client that goes away is a 499, not a server error.
One test is slow on purpose (about 65 s, named ``test_slow_...``): the acceptance run
of 1,000 slow clients held for a minute.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from engine.config import ApiConfig
from engine.http_server import LISTEN_BACKLOG, SETTLING_SECONDS, ConnectionCap, HttpServer
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port, metric_value, open_fds, wait_until

pytestmark = pytest.mark.integration

CAP = 20
SERVER_ERRORS = ('trade_engine_http_requests_total{code="500"}',)


def start_daemon(tmp_path: Path, token: str, level: str = "debug", **api: float) -> EngineProcess:
    config = {
        "name": "http-limits",
        "api": {"host": "127.0.0.1", "port": free_port(), **api},
        "log": {"format": "json", "level": level},
        "components": [{"name": "heartbeat", "type": "heartbeat"}],
    }
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = EngineProcess("run", "--config", str(path), env={"ENGINE_ADMIN_TOKEN": token})
    daemon.wait_for_log("engine.running")
    return daemon


class Limited:
    def __init__(self, daemon: EngineProcess, token: str) -> None:
        self.daemon = daemon
        self.token = token
        self.port: int = daemon.wait_for_log("api.listening")["port"]
        self.pid = daemon.proc.pid

    def metric(self, series: str) -> float:
        return metric_value(self.port, series)

    def halt_head(self, length: int) -> bytes:
        """The header of a POST /admin/halt whose body the server reads."""
        return (
            "POST /admin/halt HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Length: {length}\r\n\r\n"
        ).encode()


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Iterator[Limited]:
    """A daemon with a cap of 20 connections and half-second header and body timeouts."""
    token = f"admin-{secrets.token_hex(16)}"
    daemon = start_daemon(
        tmp_path_factory.mktemp("limited"),
        token,
        max_connections=CAP,
        header_timeout_seconds=0.5,
        body_timeout_seconds=0.5,
    )
    try:
        yield Limited(daemon, token)
    finally:
        daemon.kill()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails on timeout)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_client_that_disconnects_mid_body_is_not_a_server_error(limited):
    gone = 'trade_engine_http_requests_total{code="499"}'
    before = limited.metric(gone)
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(limited.halt_head(100) + b'{"reason": ')
        time.sleep(0.1)  # the handler is waiting for the rest of the body
    wait_until(lambda: limited.metric(gone) == before + 1, 5, "the request counted as 499")
    assert all(limited.metric(series) == 0 for series in SERVER_ERRORS)
    record = limited.daemon.wait_for_log("http.client_gone")
    assert (record["level"], record["path"]) == ("debug", "/admin/halt")
    assert not [r for r in limited.daemon.records() if "exception" in r or r["level"] == "error"]
    assert not any("Traceback" in line for line in limited.daemon.lines)


def test_a_body_slower_than_the_body_timeout_gets_408_and_is_closed_at_once(limited):
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        started = time.monotonic()
        sock.sendall(limited.halt_head(100) + b'{"reason": ')
        answer = read_until_closed(sock, timeout=5)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body not received within 0.5 s" in answer
    assert 0.4 < waited < 2.5  # the deadline, not aiohttp's 10 s lingering read
    assert limited.metric('trade_engine_http_requests_total{code="408"}') >= 1


def test_a_header_slower_than_the_header_timeout_is_closed_though_bytes_trickle_in(limited):
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.settimeout(0.1)
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        closed = False
        while not closed and time.monotonic() - started < 5:
            try:
                sock.sendall(b"X-Slow: y\r\n")
                closed = sock.recv(4096) == b""
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
        waited = time.monotonic() - started
    assert closed
    assert 0.4 < waited < 2.0


def test_at_the_cap_a_new_connection_closes_the_longest_open_idle_one(limited):
    baseline = open_fds(limited.pid)
    evicted_before = limited.metric('trade_engine_http_connections_shed_total{reason="evicted"}')
    idle = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(CAP)]
    try:
        # Over the cap while every connection is only just open: refused with a 503.
        with socket.create_connection(("127.0.0.1", limited.port)) as extra:
            assert read_until_closed(extra, timeout=2).startswith(b"HTTP/1.1 503 ")
        assert open_fds(limited.pid) - baseline <= CAP
        time.sleep(SETTLING_SECONDS + 0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{limited.port}/health", timeout=5) as r:
            assert r.status == 200  # a client that sends its request at once gets in
        assert read_until_closed(idle[0], timeout=2) == b""  # the longest-open made room
        idle[-1].settimeout(0.2)
        with pytest.raises(TimeoutError):
            idle[-1].recv(1)  # the newest is still open
        evicted = limited.metric('trade_engine_http_connections_shed_total{reason="evicted"}')
        assert evicted - evicted_before == 1  # for /health (closed again before /metrics)
        assert limited.metric('trade_engine_http_connections_shed_total{reason="refused"}') == 1
        assert open_fds(limited.pid) - baseline <= CAP
    finally:
        for sock in idle:
            sock.close()


class InProcess:
    """An HttpServer on this test's loop, with a /slow route answering when released."""

    def __init__(self, settings: ApiConfig, settling_seconds: float = SETTLING_SECONDS) -> None:
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/slow", self._slow)
        app.router.add_post("/slow", self._slow)
        self.server = HttpServer(app, settings, settling_seconds)

    async def _slow(self, request: web.Request) -> web.Response:
        await request.read()
        await self.release.wait()
        return web.json_response({"ok": True})

    @property
    def cap(self) -> ConnectionCap:
        assert self.server.cap is not None
        return self.server.cap

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self.server.port is not None
        return await asyncio.open_connection("127.0.0.1", self.server.port)

    async def __aenter__(self) -> InProcess:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.stop()


async def until(predicate: Callable[[], object], what: str) -> None:
    """Poll ``predicate`` for up to 5 s, yielding to the server on this loop."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 5 s: {what}")


async def test_a_connection_answering_a_request_is_never_closed_to_make_room():
    async with InProcess(ApiConfig(port=0, max_connections=2), settling_seconds=0) as served:
        a_reader, a = await served.connect()
        a.write(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        await until(lambda: len(served.cap.answering) == 1, "A answering")
        b_reader, b = await served.connect()  # idle
        await until(lambda: len(served.cap.open_connections()) == 2, "B connected")
        c_reader, c = await served.connect()
        assert await asyncio.wait_for(b_reader.read(), 2) == b""  # B made room, not A
        c.write(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        await until(lambda: len(served.cap.answering) == 2, "C answering")
        d_reader, d = await served.connect()
        refusal = await asyncio.wait_for(d_reader.read(), 2)
        assert refusal.startswith(b"HTTP/1.1 503 "), refusal
        served.release.set()
        for reader in (a_reader, c_reader):
            assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"HTTP/1.1 200")
        assert dict(served.cap.shed) == {"evicted": 1, "refused": 1}
        for writer in (a, b, c, d):  # kept open until here: a writer collected closes
            writer.close()


async def test_a_connection_only_just_opened_is_left_to_send_its_request():
    async with InProcess(ApiConfig(port=0, max_connections=1), settling_seconds=60) as served:
        a_reader, a = await served.connect()
        await until(lambda: len(served.cap.open_connections()) == 1, "A connected")
        b_reader, b = await served.connect()
        assert (await asyncio.wait_for(b_reader.read(), 2)).startswith(b"HTTP/1.1 503 ")
        served.cap.settling_seconds = 0  # now A has had its time
        _, c = await served.connect()
        assert await asyncio.wait_for(a_reader.read(), 2) == b""
        assert dict(served.cap.shed) == {"evicted": 1, "refused": 1}
        for writer in (a, b, c):  # kept open until here: a writer collected closes
            writer.close()


async def test_the_body_deadline_ends_when_the_body_has_arrived():
    settings = ApiConfig(port=0, body_timeout_seconds=0.2)
    async with InProcess(settings) as served:
        reader, writer = await served.connect()
        writer.write(b"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}")
        await until(lambda: len(served.cap.answering) == 1, "the body received")
        await asyncio.sleep(0.4)  # the handler takes longer than the body deadline: fine
        served.release.set()
        assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"HTTP/1.1 200")


def health_latency(port: int) -> float:
    """Seconds to GET /health on a new connection; infinite if it was not a 200."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            ok = response.status == 200
    except OSError:  # refused (503), reset, timed out
        ok = False
    return time.perf_counter() - started if ok else math.inf


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_slow_a_thousand_slow_clients_for_a_minute_keep_fds_capped_and_health_fast(tmp_path):
    """SLOW, about 65 s: the acceptance run. 1,000 clients trickle headers and bodies for
    60 s, reopening when closed; /health, probed on a new connection every 50 ms,
    answers in under 100 ms at p99 (a failed probe counts as infinitely slow), the
    daemon's FDs stay within the cap (plus one accept batch in flight), no 5xx."""
    cap, token = 100, f"admin-{secrets.token_hex(16)}"
    daemon = start_daemon(tmp_path, token, level="info", max_connections=cap)
    try:
        port = daemon.wait_for_log("api.listening")["port"]
        baseline = open_fds(daemon.proc.pid)
        attack = subprocess.Popen(
            [sys.executable, "-m", "tests.slow_clients", str(port), "1000", "60", token],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        latencies, most_fds = [], 0
        try:
            time.sleep(2)  # let them all connect
            while attack.poll() is None:
                latencies.append(health_latency(port))
                most_fds = max(most_fds, open_fds(daemon.proc.pid))
                time.sleep(0.05)
            out, _ = attack.communicate(timeout=30)
        finally:
            attack.kill()
        clients = json.loads(out)
        p99 = statistics.quantiles(latencies, n=100)[98]
        failed = latencies.count(math.inf)
        print(f"p99 {p99 * 1000:.1f} ms over {len(latencies)} probes ({failed} failed); FDs "
              f"{baseline} -> {most_fds} (cap {cap}); clients {clients}")  # fmt: skip
        assert clients["opened"] >= 1000
        assert p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms"
        assert most_fds - baseline <= cap + LISTEN_BACKLOG
        assert metric_value(port, 'trade_engine_http_requests_total{code="500"}') == 0
        assert metric_value(port, 'trade_engine_http_requests_total{code="503"}') == 0
        assert metric_value(port, 'trade_engine_http_connections_shed_total{reason="evicted"}') > 0
    finally:
        daemon.kill()
