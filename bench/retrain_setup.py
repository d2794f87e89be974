"""Set-up of bench/retrain.py: synthetic momentum candles and the config of a whole paper
engine with a retrain supervisor (after tests/retraining.py, which bench/ does not import).

The synthetic log returns follow an AR(1), ``r[t] = 0.6 r[t-1] + noise``: a model learns
it quickly and trades on most bars, and the leakage check sees no leak (there is none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from adapters.replay.market_data import SAMPLES_DIR

MODEL = "btc"
STRATEGY = "btc"
FAST = {"GBM": {"num_boost_round": 50}}  # LightGBM, 50 rounds: a model in seconds
SYMBOL = {"symbol": "BTC/USDT", "base_decimals": 8, "quote_decimals": 6}
HOURLY = SAMPLES_DIR / "BTC-USDT_1h.csv.gz"
SYNTHETIC_START = pd.Timestamp("2021-01-01", tz="UTC")


def momentum_candles(bars: int, phi: float = 0.6, seed: int = 0) -> pd.DataFrame:
    """``bars`` hourly candles from ``SYNTHETIC_START`` with AR(1) log returns."""
    rng = np.random.default_rng(seed)
    returns = np.zeros(bars)
    noise = rng.normal(0.0, 0.005, bars)
    for t in range(1, bars):
        returns[t] = phi * returns[t - 1] + noise[t]
    close = 20_000.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([20_000.0], close[:-1]))
    wiggle = 1.0 + 0.001 * rng.random(bars)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(SYNTHETIC_START, periods=bars, freq="1h"),
            "open": open_,
            "high": np.maximum(open_, close) * wiggle,
            "low": np.minimum(open_, close) / wiggle,
            "close": close,
            "volume": 100.0 + 50.0 * rng.random(bars),
        }
    )


def engine_config(
    tmp: Path,
    data: Path,
    models: Path,
    *,
    start: str,
    clock: str,
    supervisor: dict[str, Any] | None,
    replay: dict[str, Any],
) -> dict[str, Any]:
    """The paper engine of the retraining tests: journal, replay of ``data`` from
    ``start``, stationary features, a strategy host with one ML strategy, the retrain
    supervisor (unless ``supervisor`` is None), the prediction API, portfolio, paper
    executor and a risk manager whose limits never stop the orders (rate, drawdown and
    daily loss: the benchmark times orders, it does not judge the strategy)."""
    tmp.mkdir(parents=True, exist_ok=True)
    strategies = tmp / "strategies"
    strategies.mkdir(exist_ok=True)
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
    components: list[dict[str, Any]] = [
        {"name": "journal", "type": "journal", "config": {"path": str(tmp / "journal.sqlite")}},
        {
            "name": "market",
            "type": "replay",
            "config": {"path": str(data), "symbol": "BTC/USDT", "start": start, **replay},
        },
        {"name": "features", "type": "features", "config": {"feature_set": "stationary"}},
        {"name": "strategy", "type": "strategy_host", "config": {"dir": str(strategies)}},
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
                "instruments": [SYMBOL],
                "initial_balances": {"USDT": 10000},
                "eth_price_quote": 2000,
            },
        },
        {
            "name": "paper",
            "type": "paper_executor",
            "config": {"instrument": SYMBOL, "pool_depth_quote": 5000000},
        },
        {
            "name": "risk",
            "type": "risk",
            "depends_on": ["portfolio"],
            "config": {
                "order_notional_quote": 1000,
                "max_position_quote": 5000,
                "max_orders_per_window": 1_000_000,
                "rate_window_seconds": 1,
                "max_drawdown_fraction": 1.0,
                "max_daily_loss_fraction": None,
            },
        },
    ]
    if supervisor is not None:
        components.insert(
            4,
            {
                "name": "supervisor",
                "type": "retrain_supervisor",
                "depends_on": ["strategy"],
                "config": {"strategy": STRATEGY, "history": str(data), **supervisor},
            },
        )
    return {
        "name": "bench-retrain",
        "clock": clock,
        "api": {"host": "127.0.0.1", "port": 0},
        "log": {"format": "json", "level": "warning"},
        "components": components,
    }
