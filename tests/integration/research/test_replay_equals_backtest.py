"""The event-driven replay and the vectorised backtest make the same trades, one for one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from adapters.replay.market_data import SAMPLES_DIR
from engine.bus import EventBus
from engine.candles import read_candles, utc_timestamp
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentGraph
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import OrderFilled, RiskRejected
from engine.registry import build_component
from ml.features import compute
from ml.serving import ServingModel
from research.backtest import positions_from_probabilities
from tests.paper_support import MODEL, paper_config

START, END = "2021-01-01T00:00:00Z", "2021-03-31T23:00:00Z"
ENTER, EXIT = 0.6, 0.4  # the seed's thresholds


def all_in_config(models: Path, journal: Path) -> dict:
    """The paper loop with the backtest's assumptions: all in or all out, no limits that
    the vectorised backtest does not have, a pool deep enough to make impact negligible."""
    # certainty > 0.6 ⇔ P(up) > 0.6 (BUY) or P(up) < 0.4 (SELL)
    config = paper_config(models, journal, END, high_confidence=ENTER, trade_on="high")
    for entry in config["components"]:
        if entry["type"] == "risk":
            entry["config"] = {
                "order_notional_quote": 1e12,
                "max_order_notional_quote": 1e12,
                "max_position_quote": None,
                "max_orders_per_window": 10_000,
                "max_daily_loss_fraction": None,
                "max_drawdown_fraction": 1.0,
                "max_slippage_bps": 10_000,
                "max_price_impact_bps": 10_000,
            }
        if entry["type"] == "paper_executor":
            entry["config"].update(pool_depth_quote=1e12, gas_used_per_swap=0)
    return config


async def test_replay_trades_equal_the_vectorised_backtest_trades(models, tmp_path):
    # The vectorised side: batch features over the same window, the model, the seed rule.
    frame, timeframe, _ = read_candles(SAMPLES_DIR / "BTC-USDT_1h.csv.gz")
    window = frame.loc[
        (frame["timestamp"] >= utc_timestamp(START)) & (frame["timestamp"] <= utc_timestamp(END))
    ].reset_index(drop=True)
    features = compute(window, "stationary").dropna()
    model = ServingModel.load(models, MODEL)
    p_up = model.predict_frame(features)
    positions = positions_from_probabilities(p_up, ENTER, EXIT)
    changes = np.diff(np.concatenate([[0.0], positions]))
    close_ns = (
        window.loc[features.index, "timestamp"].astype("int64").to_numpy()
        + pd.Timedelta(timeframe).value
    )
    backtest_trades = [
        (int(ns), "BUY" if change > 0 else "SELL")
        for ns, change in zip(close_ns, changes, strict=True)
        if change != 0
    ]
    assert len(backtest_trades) > 10

    # The event-driven side: the daemon's own components on a simulated clock.
    config = parse_engine_config(all_in_config(models, tmp_path / "journal.sqlite"))
    bus = EventBus()
    context = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    graph = ComponentGraph([build_component(c, context) for c in config.components])
    fills: list[OrderFilled] = []
    rejections: list[RiskRejected] = []
    bus.subscribe(OrderFilled, fills.append)
    bus.subscribe(RiskRejected, rejections.append)
    await graph.start()
    await asyncio.wait_for(graph.get("market").finished.wait(), 120)  # type: ignore[attr-defined]
    await bus.drain()
    await graph.stop()

    replay_trades = [(int(f.correlation_id.split("|")[-1]), f.side) for f in fills]
    assert replay_trades == backtest_trades
    # The signals the replay did not trade were BUYs while long or SELLs while flat.
    assert {r.reason for r in rejections} <= {
        "NO_POSITION",
        "MIN_ORDER_SIZE",
        "INSUFFICIENT_BALANCE",
    }
