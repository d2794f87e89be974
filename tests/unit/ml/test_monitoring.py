"""The model monitor: predictions scored against the next bar, exposed as Prometheus series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext
from engine.config import ComponentConfig, Secrets
from engine.events import Bar, Confidence, Signal
from engine.registry import build_component, validate_component_settings
from ml.monitoring import ModelMonitor
from tests import factories

HOUR_NS = 3_600 * 10**9
BTC, ETH = "BTC/USDT", "ETH/USDT"


def bar_at(hour: int, close: float, symbol: str = BTC) -> Bar:
    return factories.bar(close, ts=hour * HOUR_NS, symbol=symbol)


def signal_at(
    hour: int,
    prediction: int,
    strategy: str = "alpha",
    version: str = "m/1",
    symbol: str = BTC,
    confidence: Confidence = "medium",
) -> Signal:
    """A HOLD signal made on ``hour``, 0.6 sure of its ``prediction``."""
    return factories.signal(
        "HOLD", ts=hour * HOUR_NS, strategy_id=strategy, symbol=symbol, prediction=prediction,
        probability_up=0.6 if prediction else 0.4, confidence=confidence, model_version=version,
    )  # fmt: skip


class Engine:
    """A real bus and registry with one started model monitor."""

    def __init__(self, window: int = 100) -> None:
        self.bus = EventBus()
        self.registry = CollectorRegistry()
        self.context = ComponentContext(self.bus, SimulatedClock(), self.registry, Secrets())
        entry = ComponentConfig(name="monitor", type="model_monitor", config={"window": window})
        self.monitor = build_component(entry, self.context)
        assert isinstance(self.monitor, ModelMonitor)

    def publish(self, *events: Bar | Signal) -> None:
        for event in events:
            self.bus.publish_nowait(event)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def accuracy(self, strategy: str = "alpha") -> float | None:
        return self.value("trade_engine_model_rolling_accuracy_ratio", strategy=strategy)

    def scored(self, strategy: str = "alpha") -> float | None:
        return self.value("trade_engine_model_predictions_scored_total", strategy=strategy)


@pytest.fixture
async def engine() -> Engine:
    engine = Engine()
    await engine.monitor.start()
    return engine


async def test_each_prediction_is_scored_against_the_next_bar_of_its_symbol(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1))  # predicts up
    assert (engine.scored(), engine.accuracy()) == (0, None)  # nothing before the next bar
    engine.publish(bar_at(1, 101.0), signal_at(1, 1))  # up: right; predicts up again
    assert (engine.scored(), engine.accuracy()) == (1, 1.0)
    engine.publish(bar_at(2, 100.0), signal_at(2, 0))  # down: wrong; predicts down
    engine.publish(bar_at(3, 100.0), signal_at(3, 1))  # flat counts as not up: right; predicts up
    engine.publish(bar_at(4, 99.0))  # down: wrong
    assert engine.scored() == 4
    assert engine.accuracy() == pytest.approx(2 / 4)


async def test_a_bar_of_another_symbol_does_not_score_the_prediction(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1))
    engine.publish(bar_at(1, 50.0, symbol=ETH))
    assert engine.scored() == 0
    engine.publish(bar_at(1, 90.0))  # BTC fell: the up prediction was wrong
    assert (engine.scored(), engine.accuracy()) == (1, 0.0)


async def test_a_signal_whose_bar_was_not_seen_is_not_scored(engine):
    engine.publish(bar_at(0, 100.0), signal_at(1, 1))  # made on hour 1, which never arrived
    engine.publish(bar_at(2, 120.0))
    assert engine.scored() == 0
    engine.publish(bar_at(2, 120.0))  # a repeated bar is ignored, not scored
    assert engine.scored() == 0


async def test_the_accuracy_covers_only_the_last_window_of_predictions():
    engine = Engine(window=3)
    await engine.monitor.start()
    closes = [100.0, 101.0, 102.0, 101.0, 100.0, 99.0]  # up, up, down, down, down
    for hour, close in enumerate(closes):
        engine.publish(bar_at(hour, close), signal_at(hour, 1))  # always predicts up
    assert engine.scored() == 5  # the last signal waits for its bar
    assert engine.accuracy() == 0.0  # the two right ones have left the window of 3
    engine.publish(bar_at(6, 150.0))
    assert engine.accuracy() == pytest.approx(1 / 3)


async def test_strategies_are_scored_separately(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1, "alpha"), signal_at(0, 0, "beta"))
    engine.publish(bar_at(1, 110.0))
    assert (engine.accuracy("alpha"), engine.accuracy("beta")) == (1.0, 0.0)
    assert (engine.scored("alpha"), engine.scored("beta")) == (1, 1)


async def test_signals_are_counted_by_confidence(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1), signal_at(0, 0, "beta"))
    engine.publish(bar_at(1, 100.0), signal_at(1, 1, confidence="high"))
    counts = {
        c: engine.value("trade_engine_model_signals_total", strategy="alpha", confidence=c)
        for c in ("high", "medium", "low")
    }
    assert counts == {"high": 1, "medium": 1, "low": 0}
    assert (
        engine.value("trade_engine_model_signals_total", strategy="beta", confidence="medium") == 1
    )


async def test_model_info_follows_the_version_in_use_and_the_window_restarts(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1, version="m/1"))
    engine.publish(bar_at(1, 110.0), signal_at(1, 1, version="m/1"))
    assert engine.value("trade_engine_model_info", strategy="alpha", model_version="m/1") == 1
    assert engine.accuracy() == 1.0

    engine.publish(bar_at(2, 90.0), signal_at(2, 1, version="m/2"))  # m/1 was wrong, then m/2
    assert engine.value("trade_engine_model_info", strategy="alpha", model_version="m/2") == 1
    exposition = generate_latest(engine.registry).decode()
    assert 'model_version="m/1"' not in exposition  # the old label set is gone
    assert engine.accuracy() is None  # m/2 has no score yet
    assert engine.scored() == 2  # the counter keeps counting across versions
    engine.publish(bar_at(3, 80.0))
    assert (engine.accuracy(), engine.scored()) == (0.0, 3)


async def test_metrics_are_unregistered_on_stop_and_a_second_monitor_is_refused(engine):
    engine.publish(bar_at(0, 100.0), signal_at(0, 1), bar_at(1, 101.0))
    second = build_component(ComponentConfig(name="monitor2", type="model_monitor"), engine.context)
    with pytest.raises(RuntimeError, match="one model_monitor per engine"):
        await second.start()

    await engine.monitor.stop()
    assert "trade_engine_model" not in generate_latest(engine.registry).decode()
    engine.publish(bar_at(2, 102.0))  # unsubscribed: no error, no effect
    assert engine.monitor.scores["alpha"].scored_total == 1


@pytest.mark.parametrize("window", [0, -5, "many"])
def test_a_bad_window_is_refused_naming_the_field(window):
    entry = ComponentConfig(name="monitor", type="model_monitor", config={"window": window})
    problems = validate_component_settings(entry, ("components", 0))
    assert len(problems) == 1
    assert "components[0].config.window" in problems[0]
