"""The retrain supervisor in a whole engine under a simulated clock, training included:
a series whose learnable pattern changes regime, a real AutoGluon retraining in a
spawned process, shadow, the promotion gate, a canary and an automatic rollback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.app import Engine
from engine.config import Secrets
from engine.candles import write_candles
from engine.config_loading import parse_engine_config
from engine.events import (
    ChallengerRegistered,
    Event,
    ModelPromoted,
    ModelRolledBack,
    PromotionDecided,
    RetrainStarted,
    ShadowSignal,
    Signal,
    SizingChanged,
)
from ml.labels import make_dataset
from ml.pipeline import train_and_register
from ml.registry import ModelRegistry
from ml.training import TrainSettings
from tests.processes import free_port
from tests.regimes import regime_candles

pytestmark = pytest.mark.integration

MODEL = "regime"
STRATEGY = "regime"
FAST = {"GBM": {"num_boost_round": 50}}
HOUR = 3_600_000_000_000
# Bars: momentum (the champion learns it), reversal (the challenger is trained on it at
# 02:00 on 19 March), then momentum again from just after the promotion.
CHAMPION_BARS = 1400
REVERSAL_BARS = 560
REGIMES = [("momentum", CHAMPION_BARS), ("reversal", REVERSAL_BARS), ("momentum", 460)]
SCHEDULE = "0 2 19 3 *"


def train_champion(frame: pd.DataFrame, models: Path, shuffle: bool = False) -> str:
    """A fast model on ``frame``, registered (and, unless ``shuffle``, the champion); with
    ``shuffle`` its labels are shuffled first and it is registered as the challenger."""
    registry = ModelRegistry(models)
    settings = TrainSettings(feature_set="stationary", time_limit=20, hyperparameters=FAST)
    if shuffle:
        rng = np.random.default_rng(7)
        frame = frame.copy()
        # Shuffled next-bar labels: closes re-drawn so that direction is noise.
        returns = rng.permutation(np.diff(np.log(frame["close"].to_numpy())))
        frame["close"] = frame["close"].iloc[0] * np.exp(
            np.concatenate(([0.0], np.cumsum(returns)))
        )
        frame["open"] = frame["close"].shift(1).fillna(frame["close"].iloc[0])
        frame["high"] = frame[["open", "close"]].max(axis=1) * 1.0005
        frame["low"] = frame[["open", "close"]].min(axis=1) / 1.0005
    result = train_and_register(
        frame, settings, registry, MODEL, {"path": "synthetic"}, promote=not shuffle
    )
    if shuffle:
        registry.set_challenger(MODEL, result.model.version, "shuffled labels (test)")
    return result.model.version


def engine_config(
    tmp_path: Path, data: Path, models: Path, start: str, supervisor: dict[str, Any], port: int
) -> dict[str, Any]:
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / f"{STRATEGY}.yaml").write_text(
        yaml.safe_dump(
            {
                "model": MODEL,
                "models_dir": str(models),
                "feature_set": "stationary",
                "trade_on": "medium",
            }  # fmt: skip
        )
    )
    symbol = {"symbol": "BTC/USDT", "base_decimals": 8, "quote_decimals": 6}
    return {
        "name": "supervised",
        "clock": "simulated",
        "api": {"host": "127.0.0.1", "port": port},
        "log": {"format": "json", "level": "warning"},
        "components": [
            {"name": "journal", "type": "journal", "config": {"path": str(tmp_path / "j.sqlite")}},
            {
                "name": "market",
                "type": "replay",
                "config": {"path": str(data), "symbol": "BTC/USDT", "start": start},
            },
            {"name": "features", "type": "features", "config": {"feature_set": "stationary"}},
            {"name": "strategy", "type": "strategy_host", "config": {"dir": str(strategies)}},
            {
                "name": "supervisor",
                "type": "retrain_supervisor",
                "depends_on": ["strategy"],
                "config": {"strategy": STRATEGY, "history": str(data), **supervisor},
            },
            {
                "name": "predict",
                "type": "prediction_api",
                "depends_on": ["strategy"],
                "config": {"strategy": STRATEGY, "feature_set": "stationary"},
            },
            {
                "name": "portfolio",
                "type": "portfolio",
                "config": {
                    "instruments": [symbol],
                    "initial_balances": {"USDT": 10000},
                    "eth_price_quote": 2000,
                },
            },
            {
                "name": "paper",
                "type": "paper_executor",
                "config": {"instrument": symbol, "pool_depth_quote": 5000000},
            },
            {
                "name": "risk",
                "type": "risk",
                "depends_on": ["portfolio"],
                "config": {"order_notional_quote": 1000, "max_position_quote": 5000},
            },
        ],  # fmt: skip
    }


def post_predict(port: int, row: dict[str, float]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps(row).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


async def run_engine(
    config: dict[str, Any], watch: list[type[Event]]
) -> tuple[Engine, list[Any], list[tuple[str, str, str]]]:
    """Run the engine to the end of its replay; every ``watch`` event, and at each
    promotion and rollback the (event, strategy's model, /predict's model) labels."""
    engine = Engine(parse_engine_config(config), Secrets())
    seen: list[Any] = []
    served: list[tuple[str, str, str]] = []
    strategy_host = engine.graph.get("strategy")
    predict = engine.graph.get("predict")

    def record(event: Any) -> None:
        seen.append(event)
        if isinstance(event, ModelPromoted | ModelRolledBack):
            strategy = strategy_host.model_server(STRATEGY)  # type: ignore[attr-defined]
            served.append((type(event).__name__, strategy.model.label, predict.model.label))  # type: ignore[attr-defined]

    for event_type in watch:
        engine.bus.subscribe(event_type, record)
    await engine.start()
    await asyncio.wait_for(engine.graph.get("market").finished.wait(), 300)  # type: ignore[attr-defined]
    await engine.bus.drain()
    return engine, seen, served


def journal_types(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT type FROM events ORDER BY id")]
    finally:
        conn.close()


def metric(engine: Engine, name: str, **labels: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


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
    assert fractions == sorted(fractions[:-1]) + [1.0]
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
