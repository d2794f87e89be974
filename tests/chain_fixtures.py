"""Pytest fixtures on a real anvil chain: load with ``pytest_plugins = ["tests.chain_fixtures"]``.

``chain`` (one anvil and one deployment per test module) is shared; every test gets
its own funded ``trader`` account, so nonces and balances never leak between tests.
``own_chain`` is a chain of one test's own, for tests that freeze or stop the node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters.uniswap_v2.executor import UniswapV2Executor
from engine.bus import EventBus
from engine.clock import Clock, LiveClock
from engine.component import ComponentContext
from engine.config import Secrets
from tests.chain_helpers import (
    Chain,
    ExecutorHarness,
    Recorder,
    Trader,
    executor_config,
    new_trader,
    start_chain,
)


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    """An automining anvil with Uniswap V2 deployed, shared by one test module."""
    c = start_chain()
    yield c
    c.anvil.stop()


@pytest.fixture
def own_chain() -> Iterator[Chain]:
    """A chain for one test, free to freeze or to stop mining."""
    c = start_chain()
    yield c
    c.anvil.stop()


@pytest.fixture
async def trader(chain: Chain) -> Trader:
    return await new_trader(chain)


@pytest.fixture
async def make_executor() -> AsyncIterator[Any]:
    """``await make_executor(chain, trader, **config)``: a started executor, stopped after
    (on a fresh bus unless one is given)."""
    started: list[UniswapV2Executor] = []

    async def make(
        chain: Chain,
        trader: Trader,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        **overrides: Any,
    ) -> ExecutorHarness:
        bus = EventBus() if bus is None else bus
        recorder = Recorder(bus)
        registry = CollectorRegistry()
        context = ComponentContext(
            bus=bus,
            clock=clock or LiveClock(),
            metrics_registry=registry,
            secrets=Secrets.from_env({"ENGINE_PRIVATE_KEY": trader.private_key}),
        )
        executor = UniswapV2Executor(
            "dex", executor_config(chain, **overrides), context, depends_on=()
        )
        await executor.start()
        started.append(executor)
        return ExecutorHarness(executor, bus, recorder, registry)

    yield make
    for executor in started:
        await executor.stop()
