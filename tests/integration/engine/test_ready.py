"""GET /ready of a real engine: 503 naming each component that is not RUNNING, and why."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from engine.app import Engine
from engine.config import EngineConfig, Secrets
from tests.processes import free_port

pytestmark = pytest.mark.integration


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/ready") as response,
    ):
        return response.status, await response.json()


async def test_ready_is_503_naming_the_component_that_is_not_running_until_it_recovers():
    config = EngineConfig(
        api={"port": free_port()},
        components=[
            {"name": "beat", "type": "heartbeat", "config": {"interval_seconds": 60}},
            {"name": "other", "type": "heartbeat", "config": {"interval_seconds": 60}},
        ],
    )
    engine = Engine(config, Secrets())
    await engine.start()
    try:
        assert engine.api is not None
        port = engine.api.port or 0
        assert (await ready(port))[0] == 200

        engine.graph.get("beat").degrade("feed reconnecting")
        status, body = await ready(port)
        assert status == 503
        assert body["ready"] is False
        states = {c["name"]: (c["state"], c["reason"]) for c in body["components"]}
        assert states["beat"] == ("DEGRADED", "feed reconnecting")
        assert states["other"][0] == "RUNNING"

        engine.graph.get("beat").recover()
        assert (await ready(port))[0] == 200
        engine.graph.get("other").fault("chain unreachable")
        status, body = await ready(port)
        assert status == 503
        assert {"name": "other", "state": "FAULTED", "reason": "chain unreachable"} in body[
            "components"
        ]
    finally:
        await engine.stop()
