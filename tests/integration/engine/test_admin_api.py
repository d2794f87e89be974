"""The admin API and GET /status of a real daemon: token guard, halt/resume, reload."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import urllib.request
from typing import Any

import pytest
import yaml

from engine.admin import ADMIN_DISABLED, is_loopback
from engine.app import Engine
from engine.config import EngineConfig, Secrets
from engine.redaction import REDACTED
from tests.paper_support import STRATEGY, daemon_config
from tests.processes import EngineProcess, free_port, wait_until

pytestmark = pytest.mark.integration


class Client:
    """HTTP to the daemon, remembering every response body (searched for the token)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[str] = []

    def call(
        self, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
        authorization: str | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        self.bodies.append(text)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def component(self, name: str) -> dict[str, Any]:
        _, body = self.call("GET", "/status")
        (entry,) = [c for c in body["components"] if c["name"] == name]
        return entry


def test_admin_routes_need_the_token_halt_resume_and_reload_and_never_show_it(models, tmp_path):
    token = f"admin-{secrets.token_hex(16)}"
    config, strategies, _ = daemon_config(models, tmp_path, watch=False)
    path = strategies / f"{STRATEGY}.yaml"
    base = yaml.safe_load(path.read_text())
    daemon = EngineProcess("run", "--config", str(config), env={"ENGINE_ADMIN_TOKEN": token})
    try:
        client = Client(daemon.wait_for_log("api.listening")["port"])
        daemon.wait_for_log("engine.running")

        # Without the token, or with a wrong one: 401, and nothing happens.
        for auth in (None, "Bearer wrong-token", f"Basic {token}", "Bearer", f"Bearer {token}x"):
            status, body = client.call("POST", "/admin/halt", authorization=auth)
            assert status == 401, (auth, body)
            assert "bearer token" in body["error"]
        assert client.component("risk")["status"]["state"] == "ACTIVE"
        assert client.call("GET", "/admin/halt", token=token)[0] == 405

        # Bad halt bodies: 400 naming the problem.
        status, body = client.call("POST", "/admin/halt", token=token, body=b"{not json")
        assert status == 400
        assert "invalid JSON" in body["error"]
        status, body = client.call("POST", "/admin/halt", token=token, body=b'{"reason": 5}')
        assert status == 400
        assert body["error"].startswith("reason:")

        # /status: components, risk, portfolio, the strategy's model and config.
        _, snapshot = client.call("GET", "/status")
        assert snapshot["engine"] == "paper"
        assert snapshot["bus_sequence"] > 0
        assert snapshot["uptime_seconds"] > 0
        by_name = {c["name"]: c for c in snapshot["components"]}
        assert {"journal", "market", "strategy", "risk", "portfolio", "api"} <= set(by_name)
        assert all(c["state"] == "RUNNING" for c in by_name.values())
        portfolio = by_name["portfolio"]["status"]
        assert portfolio["balances"]["USDT"]["amount"] > 0
        assert "equity_quote" in portfolio
        strategy = by_name["strategy"]["status"]["strategies"][STRATEGY]
        assert strategy["config_version"] == 1
        assert strategy["model_version"].startswith("btc-usdt-1h/")

        # Halt: the risk manager refuses every order with HALTED; resume lifts it.
        status, body = client.call(
            "POST", "/admin/halt", token=token, body=b'{"reason": "maintenance window"}'
        )
        assert status == 200
        assert body["risk"] == [{"name": "risk", "state": "HALTED", "reason": "maintenance window"}]
        wait_until(
            lambda: client.component("risk")["status"]["rejections"].get("HALTED", 0) > 0,
            30,
            "a signal rejected as HALTED",
        )
        status, body = client.call("POST", "/admin/resume", token=token)
        assert status == 200
        assert body["risk"][0]["state"] == "ACTIVE"
        assert client.component("risk")["status"]["state"] == "ACTIVE"

        # A reason holding the token (pasted by mistake): redacted wherever it is shown.
        reason = json.dumps({"reason": f"paged, token {token}"}).encode()
        status, body = client.call("POST", "/admin/halt", token=token, body=reason)
        assert (status, body["risk"][0]["reason"]) == (200, f"paged, token {REDACTED}")
        assert client.component("risk")["status"]["reason"] == f"paged, token {REDACTED}"
        assert client.call("POST", "/admin/resume", token=token)[0] == 200

        # Reload: an invalid file is rejected with its field path (422), the old one runs.
        path.write_text(yaml.safe_dump({**base, "high_confidence": 1.5}))
        status, body = client.call("POST", "/admin/reload", token=token)
        assert status == 422
        (report,) = body["reloads"]
        assert report["component"] == "strategy"
        assert report["trigger"] == "admin"
        (rejected,) = report["rejected"]
        assert rejected["errors"] == [f"{path}: high_confidence: must be < 1, got 1.5"]
        assert client.component("strategy")["status"]["strategies"][STRATEGY][
            "config_version"
        ] == 1  # fmt: skip

        path.write_text(yaml.safe_dump({**base, "high_confidence": 0.8}))
        status, body = client.call("POST", "/admin/reload", token=token)
        assert status == 200
        (applied,) = body["reloads"][0]["applied"]
        assert (applied["strategy"], applied["config_version"]) == (STRATEGY, 2)
        failures = client.component("strategy")["status"]["reload_failures"]
        assert failures == {"start": 0, "file_watch": 0, "sighup": 0, "admin": 1}

        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        daemon.kill()

    logged = "".join(daemon.lines)
    assert daemon.wait_for_log("admin.halt")["reason"] == "maintenance window"
    assert daemon.wait_for_log("admin.unauthorized")["path"] == "/admin/halt"
    assert token not in logged
    assert not any(token in body for body in client.bodies)


async def test_status_needs_the_token_when_the_api_is_reachable_from_other_machines(
    monkeypatch,
):
    # Binding 0.0.0.0 is not allowed here: listen on loopback, but decide as for 0.0.0.0.
    assert not is_loopback("0.0.0.0")
    monkeypatch.setattr("engine.api.is_loopback", lambda host: False)
    token = f"admin-{secrets.token_hex(16)}"
    engine = Engine(EngineConfig(api={"port": free_port()}), Secrets(admin_token=token))
    await engine.start()
    try:
        assert engine.api is not None
        client = Client(engine.api.port or 0)
        for auth in (None, "Bearer wrong-token"):
            status, body = await asyncio.to_thread(
                client.call, "GET", "/status", authorization=auth
            )
            assert status == 401, body
            assert "components" not in body
        status, body = await asyncio.to_thread(client.call, "GET", "/status", token=token)
        assert status == 200
        assert [c["name"] for c in body["components"]] == ["api"]
        for open_route in ("/health", "/ready", "/metrics"):  # probes and scrapes: no token
            assert (await asyncio.to_thread(client.call, "GET", open_route))[0] == 200
    finally:
        await engine.stop()


async def test_admin_routes_answer_403_when_no_token_is_set():
    engine = Engine(EngineConfig(api={"port": free_port()}), Secrets())
    await engine.start()
    try:
        assert engine.api is not None
        client = Client(engine.api.port or 0)
        for route in ("/admin/halt", "/admin/resume", "/admin/reload"):
            # urllib blocks: run it off the loop the server is on.
            status, body = await asyncio.to_thread(
                client.call, "POST", route, token="anything-at-all"
            )
            assert (status, body) == (403, {"error": ADMIN_DISABLED})
        status, body = await asyncio.to_thread(client.call, "GET", "/status")
        assert status == 200
        assert [c["name"] for c in body["components"]] == ["api"]
    finally:
        await engine.stop()
