"""Each retrain trigger in a whole engine under a simulated clock: it fires when it
should and not otherwise, and the cooldown holds.

The retrainings themselves are refused at once here (``min_train_bars`` above what
exists: a ``RetrainFailed`` naming the trigger), so these runs measure the triggers
alone; tests/integration/ml/test_supervisor.py trains for real.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.candles import write_candles
from engine.events import RetrainFailed, RetrainStarted
from ml.registry import ModelRegistry
from tests.processes import free_port
from tests.retraining import (
    CHAMPION_BARS,
    HOUR,
    STRATEGY,
    engine_config,
    regime_candles,
    run_engine,
    train_champion,
)

pytestmark = pytest.mark.integration

OFF = {"schedule": None, "max_model_age_days": None, "min_accuracy": None, "drift": False}
NEVER_ENOUGH = 10**6  # min_train_bars: every attempt fails at once, after its trigger fired


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory whose champion learned the momentum regime."""
    models = tmp_path_factory.mktemp("trigger-models")
    train_champion(regime_candles([("momentum", CHAMPION_BARS)]), models)
    return models


async def attempts(
    tmp_path: Path, models: Path, regimes: list[tuple[str, int]], **supervisor: Any
) -> tuple[list[RetrainFailed], pd.DataFrame, float]:
    """Run ``regimes`` (after the champion's own momentum bars) and return every
    retraining attempt, the candles, and the scheduled firings skipped (from /metrics)."""
    frame = regime_candles([("momentum", CHAMPION_BARS), *regimes])
    tmp_path.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (set-up, before the loop runs)
    data = tmp_path / "candles.csv"
    write_candles(frame, data)
    settings = {"min_train_bars": NEVER_ENOUGH, "cooldown_hours": 0, **supervisor}
    settings["triggers"] = {**OFF, **supervisor.get("triggers", {})}
    config = engine_config(
        tmp_path, data, models, str(frame["timestamp"].iloc[CHAMPION_BARS]), settings, free_port()
    )
    engine, seen, _ = await run_engine(config, [RetrainFailed, RetrainStarted])
    skipped = engine.metrics.registry.get_sample_value(
        "trade_engine_model_retrains_total",
        {"strategy": STRATEGY, "trigger": "schedule", "outcome": "skipped"},
    )
    await engine.stop()
    assert not [e for e in seen if isinstance(e, RetrainStarted)]  # none had enough bars
    return seen, frame, skipped or 0.0


def closes(frame: pd.DataFrame) -> pd.Series:
    return frame["timestamp"] + pd.Timedelta(hours=1)


async def test_the_default_schedule_fires_at_two_in_the_morning_simulated_time(tmp_path, champion):
    seen, frame, _ = await attempts(
        tmp_path, champion, [("momentum", 24 * 5)], triggers={"schedule": "0 2 * * *"}
    )
    replayed = closes(frame).iloc[CHAMPION_BARS:]
    expected = [t for t in replayed if t.hour == 2 and t.minute == 0 and t > replayed.iloc[0]]
    assert len(expected) == 5
    assert [pd.Timestamp(e.ts_event, tz="UTC") for e in seen] == expected
    assert {e.trigger for e in seen} == {"schedule"}


async def test_the_cooldown_spaces_attempts_and_counts_the_skipped_firings(tmp_path, champion):
    seen, frame, skipped = await attempts(
        tmp_path, champion, [("momentum", 48)], triggers={"schedule": "0 * * * *"},
        cooldown_hours=5,
    )  # fmt: skip
    times = [e.ts_event for e in seen]
    assert len(times) >= 9
    assert {b - a for a, b in itertools.pairwise(times)} == {5 * HOUR}
    firings = len(frame) - CHAMPION_BARS - 1  # every hour after the first bar
    assert skipped == firings - len(times)


async def test_the_age_trigger_fires_once_the_model_is_older_than_the_limit(tmp_path, champion):
    seen, _, _ = await attempts(
        tmp_path, champion, [("momentum", 24 * 6)],
        triggers={"max_model_age_days": 3}, cooldown_hours=24,
    )  # fmt: skip
    trained_until = ModelRegistry(champion).current("regime").trained_until_ns  # type: ignore[union-attr]
    assert [e.trigger for e in seen] == ["model_age"] * len(seen)
    first = seen[0].ts_event
    assert first - trained_until >= 3 * 24 * HOUR
    assert first - trained_until < 3 * 24 * HOUR + 2 * HOUR  # at the first bar past the limit
    assert [b.ts_event - a.ts_event for a, b in itertools.pairwise(seen)] == [24 * HOUR] * (
        len(seen) - 1
    )


async def test_the_accuracy_trigger_fires_after_the_regime_changes_not_before(tmp_path, champion):
    seen, frame, _ = await attempts(
        tmp_path, champion, [("momentum", 300), ("reversal", 300)],
        triggers={"min_accuracy": 0.6, "accuracy_window": 100}, cooldown_hours=1000,
    )  # fmt: skip
    switch = closes(frame).iloc[CHAMPION_BARS + 300]
    (fired,) = seen
    assert fired.trigger == "accuracy"
    assert pd.Timestamp(fired.ts_event, tz="UTC") > switch


async def test_drift_fires_after_the_regime_changes_and_not_on_a_stationary_series(
    tmp_path, champion
):
    seen, frame, _ = await attempts(
        tmp_path / "change", champion, [("momentum", 300), ("reversal", 300)],
        triggers={"drift": True}, cooldown_hours=1000,
    )  # fmt: skip
    switch = closes(frame).iloc[CHAMPION_BARS + 300]
    (fired,) = seen
    assert fired.trigger == "drift"
    # ADWIN (delta 0.002, checking every 32 scores) needed 160-odd bars here (measured).
    assert switch < pd.Timestamp(fired.ts_event, tz="UTC") < switch + pd.Timedelta(hours=250)

    quiet, _, _ = await attempts(
        tmp_path / "stationary", champion, [("momentum", 600)], triggers={"drift": True}
    )
    assert quiet == []
