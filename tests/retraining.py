"""Shared set-up of the retraining tests: synthetic candles whose learnable pattern
changes regime, a fast champion, and a whole engine with a retrain supervisor under a
simulated clock.

Log returns follow an AR(1): ``r[t] = phi * r[t-1] + noise`` with ``phi = +strength``
(``momentum``), ``-strength`` (``reversal``) or 0 (``random``). A model trained on one
regime is about as wrong on the other as it was right on its own. Linear in the past
returns on purpose: the leakage check (partial correlations beyond what past returns
explain) then sees no leak, as there is none. (A sign-only pattern with random sizes is
predictable non-linearly, and the check flags such honest features: measured.)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from engine.app import Engine
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import (
    Event,
    ModelPromoted,
    ModelRolledBack,
)
from ml.pipeline import train_and_register
from ml.registry import ModelRegistry
from ml.training import TrainSettings


def regime_candles(
    regimes: Sequence[tuple[str, int]],
    start: str = "2021-01-01T00:00:00Z",
    strength: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """Hourly candles: ``regimes`` is a list of (``momentum``|``reversal``|``random``, bars)."""
    rng = np.random.default_rng(seed)
    phis = {"momentum": strength, "reversal": -strength, "random": 0.0}
    returns = [0.0]
    for kind, bars in regimes:
        phi = phis[kind]
        for _ in range(bars):
            returns.append(phi * returns[-1] + rng.normal(0.0, 0.005))
    log_returns = np.array(returns[1:])
    close = 20_000.0 * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate(([20_000.0], close[:-1]))
    wiggle = 1.0 + 0.001 * rng.random(len(close))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=len(close), freq="1h"),
            "open": open_,
            "high": np.maximum(open_, close) * wiggle,
            "low": np.minimum(open_, close) / wiggle,
            "close": close,
            "volume": 100.0 + 50.0 * rng.random(len(close)),
        }
    )


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
            }
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
        ],
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
