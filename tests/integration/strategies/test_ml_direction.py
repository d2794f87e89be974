"""The ML strategy on the shared hourly model: features of another timeframe are refused."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentState
from engine.config import Secrets
from engine.events import Features, Signal
from ml.registry import ModelRegistry
from strategies.ml_direction import MLDirectionConfig, MLDirectionStrategy
from tests.paper_support import MODEL

pytestmark = pytest.mark.integration


async def test_features_of_another_timeframe_than_the_models_get_no_signal_unless_allowed(models):
    assert ModelRegistry(models).current(MODEL).metadata["timeframe"] == "1h"  # from training
    context = ComponentContext(EventBus(), SimulatedClock(), CollectorRegistry(), Secrets())
    signals: list[Signal] = []
    context.bus.subscribe(Signal, signals.append)
    settings = MLDirectionConfig(model=MODEL, models_dir=str(models), feature_set="stationary")
    strategy = MLDirectionStrategy("ml", settings, context)
    await strategy.start()
    values = dict.fromkeys(strategy.active.model.columns, 0.0)

    async def features(timeframe: str) -> list[Signal]:
        before = len(signals)
        await context.bus.publish(
            Features(
                ts_event=1,
                ts_init=1,
                correlation_id=f"BTC/USDT|{timeframe}|1",
                symbol="BTC/USDT",
                timeframe=timeframe,
                feature_set="stationary",
                values=values,
            )
        )
        await context.bus.drain()
        return signals[before:]

    try:
        assert await features("1d") == []
        assert strategy.state is ComponentState.DEGRADED
        assert strategy.health().reason == (
            f"model {strategy.active.model.label} was trained on 1h bars, but the data is 1d: "
            "train a model on 1d bars, or set allow_timeframe_mismatch: true in the strategy "
            "config"
        )
        assert await features("1d") == []
        assert len(await features("1h")) == 1  # its own timeframe still trades

        allowed = settings.model_copy(update={"allow_timeframe_mismatch": True})
        await strategy.apply_settings(allowed, version=2, content_hash="")
        assert strategy.state is ComponentState.RUNNING
        assert len(await features("1d")) == 1
        assert strategy.state is ComponentState.RUNNING

        await strategy.apply_settings(settings, version=3, content_hash="")
        assert await features("1d") == []  # judged again under the strict settings
        assert strategy.state is ComponentState.DEGRADED
    finally:
        await strategy.stop()
