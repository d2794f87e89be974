"""The retrain supervisor in a whole engine under a simulated clock, training included:
a series whose learnable pattern changes regime, a real AutoGluon retraining in a
spawned process, shadow, the promotion gate, a canary and an automatic rollback."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from engine.candles import write_candles
from engine.events import (
    ChallengerRegistered,
    ModelPromoted,
    ModelRolledBack,
    PromotionDecided,
    RetrainStarted,
    ShadowSignal,
    Signal,
    SizingChanged,
)
from ml.labels import make_dataset
from ml.registry import ModelRegistry
from tests.processes import free_port
from tests.retraining import (
    CHAMPION_BARS,
    FAST,
    MODEL,
    REGIMES,
    SCHEDULE,
    STRATEGY,
    engine_config,
    journal_types,
    metric,
    post_predict,
    regime_candles,
    run_engine,
    train_champion,
)

pytestmark = pytest.mark.integration


async def test_a_better_challenger_is_promoted_and_a_canary_that_underperforms_rolled_back(
    tmp_path,
):
    frame = regime_candles(REGIMES)
    data = tmp_path / "regimes.csv"
    write_candles(frame, data)
    models = tmp_path / "models"
    champion = train_champion(frame.iloc[:CHAMPION_BARS], models)
    start = str(frame["timestamp"].iloc[CHAMPION_BARS])
    supervisor = {
        "window_bars": 500,
        "time_limit": 20,
        "hyperparameters": FAST,
        "triggers": {"schedule": SCHEDULE, "max_model_age_days": None, "min_accuracy": None},
        "gate": {"shadow_bars": 100, "tests": ["mcnemar", "pnl"]},
        "canary": {"initial_fraction": 0.25, "ramp_bars": 200},
    }
    port = free_port()
    watch = [RetrainStarted, ChallengerRegistered, ShadowSignal, PromotionDecided, ModelPromoted,
             SizingChanged, ModelRolledBack, Signal]  # fmt: skip
    engine, seen, served = await run_engine(
        engine_config(tmp_path, data, models, start, supervisor, port), watch
    )
    try:
        # /predict answers with the model the strategy trades, after the rollback too.
        strategy = engine.graph.get("strategy").model_server(STRATEGY)  # type: ignore[attr-defined]
        features, _ = make_dataset(frame.tail(300), "stationary")
        answer = await asyncio.to_thread(post_predict, port, features.iloc[-1].to_dict())
        assert answer["model_version"] == strategy.model.label == f"{MODEL}/{champion}"
        sup = engine.graph.get("supervisor")
        assert metric(engine, "trade_engine_model_rollbacks_total", strategy=STRATEGY) == 1
        assert metric(engine, "trade_engine_model_promotion_decisions_total", strategy=STRATEGY,
                      outcome="promoted") == 1  # fmt: skip
        assert metric(engine, "trade_engine_model_retrains_total", strategy=STRATEGY,
                      trigger="schedule", outcome="registered") == 1  # fmt: skip
        assert metric(engine, "trade_engine_model_canary_fraction", strategy=STRATEGY) == 1.0
        assert sup.status()["phase"] == "idle"  # type: ignore[attr-defined]
    finally:
        await engine.stop()

    by_type: dict[str, list[Any]] = {}
    for event in seen:
        by_type.setdefault(type(event).__name__, []).append(event)
    # The schedule fired at 02:00 simulated time on 19 March, once.
    (started,) = by_type["RetrainStarted"]
    assert started.trigger == "schedule"
    assert pd.Timestamp(started.ts_event, tz="UTC") == pd.Timestamp("2021-03-19T02:00:00Z")
    assert started.data_end <= started.ts_event  # no bar after the clock's time
    assert started.rows == 500
    (registered,) = by_type["ChallengerRegistered"]
    assert registered.ts_event == started.ts_event  # time waited for the training
    # Shadow: the challenger's predictions are journalled, never Signals.
    shadows = [s for s in by_type["ShadowSignal"] if s.role == "challenger"]
    assert len(shadows) >= 100
    assert all(s.model_version == f"{MODEL}/{registered.version}" for s in shadows)
    assert not [
        s
        for s in by_type["Signal"]
        if s.model_version == shadows[0].model_version and s.ts_event < shadows[-1].ts_event
    ]
    # The gate promoted the reversal-trained challenger on the reversal bars.
    (decision,) = by_type["PromotionDecided"]
    assert decision.promoted, decision.reason
    assert decision.statistics["mcnemar"]["p_value"] < 0.05
    assert (
        decision.statistics["candidate_accuracy"] > decision.statistics["incumbent_accuracy"] + 0.2
    )
    (promoted,) = by_type["ModelPromoted"]
    assert promoted.version == registered.version
    # Signals switch to the new champion at the next bar, between two events.
    after = [s for s in by_type["Signal"] if s.ts_event > promoted.ts_event]
    assert after[0].model_version == f"{MODEL}/{registered.version}"
    # Canary: a quarter of the size, ramping, then back to full after the rollback.
    fractions = [s.fraction for s in by_type["SizingChanged"]]
    assert fractions[0] == 0.25
    assert fractions == [*sorted(fractions[:-1]), 1.0]
    (rolled,) = by_type["ModelRolledBack"]
    assert rolled.to_version == champion
    assert rolled.reason.startswith("canary: accuracy")
    assert after[-1].model_version == f"{MODEL}/{champion}"
    # /predict and the strategy served the same model at the promotion and the rollback.
    assert served == [
        ("ModelPromoted", f"{MODEL}/{registered.version}", f"{MODEL}/{registered.version}"),
        ("ModelRolledBack", f"{MODEL}/{champion}", f"{MODEL}/{champion}"),
    ]
    # Every step is in the journal and in the registry's alias history.
    types = journal_types(tmp_path / "j.sqlite")
    for kind in ("RetrainStarted", "ChallengerRegistered", "ShadowSignal", "PromotionDecided",
                 "ModelPromoted", "SizingChanged", "ModelRolledBack"):  # fmt: skip
        assert kind in types, kind
    registry = ModelRegistry(models)
    assert [c.kind for c in registry.history(MODEL)] == [
        "promote",
        "register",
        "promote",
        "rollback",
    ]
    assert registry.aliases(MODEL) == {"champion": champion}


async def test_a_challenger_trained_on_shuffled_labels_is_never_promoted(tmp_path):
    frame = regime_candles([("random", 2600)], seed=3)
    data = tmp_path / "random.csv"
    write_candles(frame, data)
    models = tmp_path / "models"
    champion = train_champion(frame.iloc[:1400], models)
    shuffled = train_champion(frame.iloc[:1400], models, shuffle=True)
    supervisor = {
        "triggers": {"schedule": None, "max_model_age_days": None, "min_accuracy": None},
        "gate": {"shadow_bars": 1000, "tests": ["mcnemar"]},
    }
    engine, seen, _ = await run_engine(
        engine_config(
            tmp_path, data, models, str(frame["timestamp"].iloc[1400]), supervisor, free_port()
        ),
        [PromotionDecided, ModelPromoted],
    )
    await engine.stop()
    (decision,) = seen
    assert not decision.promoted
    assert decision.challenger == f"{MODEL}/{shuffled}"
    assert decision.statistics["bars"] == 1000
    assert ModelRegistry(models).aliases(MODEL) == {"champion": champion}
