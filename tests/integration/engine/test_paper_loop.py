"""The paper-trading loop of config/paper.yaml, end to end, on real hourly candles."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentGraph
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import (
    Features,
    OrderFailed,
    OrderFilled,
    OrderRequest,
    OrderSubmitted,
    PortfolioUpdate,
    RiskRejected,
    Signal,
)
from engine.journal import JournalReader
from engine.reasons import Reason
from engine.registry import build_component
from tests.paper_support import balances_after, paper_config


async def test_paper_loop_trades_real_history_consistently_and_journals_it(models, tmp_path):
    config = parse_engine_config(
        paper_config(models, tmp_path / "journal.sqlite", end="2021-01-31T23:00:00Z")
    )
    bus = EventBus()
    context = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    graph = ComponentGraph([build_component(c, context) for c in config.components])
    seen: dict[type, list] = {
        t: [] for t in (Features, Signal, OrderRequest, OrderSubmitted, OrderFilled,
                        OrderFailed, RiskRejected, PortfolioUpdate)
    }  # fmt: skip
    for event_type, sink in seen.items():
        bus.subscribe(event_type, sink.append)
    await graph.start()
    await asyncio.wait_for(graph.get("market").finished.wait(), 120)  # type: ignore[attr-defined]
    await bus.drain()
    await graph.stop()

    assert len(seen[Signal]) == len(seen[Features]) > 600
    orders = {o.order_id: o for o in seen[OrderRequest]}
    assert orders, "the month should produce trades with trade_on: medium"
    settled = {e.order_id for e in seen[OrderFilled]} | {e.order_id for e in seen[OrderFailed]}
    assert settled == set(orders)  # every order filled or failed, none lost
    assert {e.order_id for e in seen[OrderSubmitted]} >= {e.order_id for e in seen[OrderFilled]}
    assert {r.reason for r in seen[RiskRejected]} <= {reason.value for reason in Reason}

    # The portfolio's balances are the start plus every fill's flows, to the base unit.
    final = seen[PortfolioUpdate][-1]
    assert final.balances == balances_after(seen[OrderFilled])

    # In the journal every order precedes its fill, and the fill carries the bar's id.
    reader = JournalReader.open(tmp_path / "journal.sqlite")
    rows = {(r.type, r.event().order_id): r.id for r in reader.rows(  # type: ignore[attr-defined]
        types=("OrderRequest", "OrderFilled"))}  # fmt: skip
    for order_id in {e.order_id for e in seen[OrderFilled]}:
        assert rows[("OrderRequest", order_id)] < rows[("OrderFilled", order_id)]
    fill = seen[OrderFilled][0]
    assert fill.correlation_id == orders[fill.order_id].correlation_id
