"""The demo's chain component on a real anvil: the arbitrage step and a dead node."""

from __future__ import annotations

import os
import signal
from fractions import Fraction

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapters.uniswap_v2.local_chain import LocalChain, LocalChainConfig
from engine.bus import EventBus
from engine.clock import LiveClock
from engine.component import ComponentContext
from engine.config import Secrets
from tests.factories import bar
from tests.processes import EngineProcess, process_alive, wait_until

pytestmark = pytest.mark.integration


async def test_each_bar_moves_the_pool_to_its_close_and_a_dead_node_degrades_the_chain():
    bus = EventBus()
    registry = CollectorRegistry()
    context = ComponentContext(bus, LiveClock(), registry, Secrets())
    settings = LocalChainConfig(symbol="BTC/USDT", initial_price=1000, pool_depth_quote=1e6)
    chain = LocalChain("chain", settings, context)
    assert context.components.find(LocalChain, "chain") is chain
    await chain.start()
    try:
        market = context.market_view
        for n, close in enumerate((1_250.5, 980.25, 1_010.0), start=1):
            bus.publish_nowait(
                bar(close, ts=n, symbol="BTC/USDT", correlation_id=f"BTC/USDT|1h|{n}")
            )
            await chain.pool_settled()
            base, quote = await chain._read_reserves()
            assert abs(Fraction(quote, base) / Fraction(close) - 1) < Fraction(1, 10**9)
            assert market.reserves("BTC/USDT") == (base, quote)  # what risk sizes on
        swaps = registry.get_sample_value(
            "trade_engine_chain_arbitrage_swaps_total", {"component": "chain", "symbol": "BTC/USDT"}
        )
        assert swaps == 3
        assert chain.state == "RUNNING"

        anvil_pid = chain.anvil.pid
        chain.anvil.stop()  # the node dies under the running engine
        bus.publish_nowait(bar(1_100.0, ts=4, symbol="BTC/USDT", correlation_id="BTC/USDT|1h|4"))
        await chain.pool_settled()
        assert chain.state == "DEGRADED"
        assert "arbitrage failing" in chain.health().reason
        assert chain.arbitrage_failures == 1
    finally:
        await chain.stop()
    assert chain.state == "STOPPED"
    assert not process_alive(anvil_pid)


def test_a_daemon_killed_9_leaves_no_anvil_behind(tmp_path):
    config = {
        "name": "chain-only",
        "log": {"format": "json"},
        "api": {"enabled": False},
        "components": [
            {
                "name": "chain",
                "type": "local_chain",
                "config": {"symbol": "BTC/USDT", "initial_price": 1000},
            }
        ],
    }
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = EngineProcess("run", "--config", str(path))
    try:
        anvil_pid = daemon.wait_for_log("chain.ready", timeout=60)["anvil_pid"]
        assert process_alive(anvil_pid)
        os.kill(daemon.proc.pid, signal.SIGKILL)  # the daemon alone: anvil has its own session
        daemon.wait(timeout=5)
        wait_until(lambda: not process_alive(anvil_pid), 5, "anvil to die with the daemon")
    finally:
        daemon.kill()
