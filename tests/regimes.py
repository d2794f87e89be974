"""Synthetic hourly candles whose learnable pattern changes regime, for the retrain tests.

Log returns follow an AR(1): ``r[t] = phi * r[t-1] + noise`` with ``phi = +strength``
(``momentum``), ``-strength`` (``reversal``) or 0 (``random``). A model trained on one
regime is about as wrong on the other as it was right on its own. Linear in the past
returns on purpose: the leakage check (partial correlations beyond what past returns
explain) then sees no leak, as there is none. (A sign-only pattern with random sizes is
predictable non-linearly, and the check flags such honest features: measured.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from engine.candles import write_candles


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


def write_regime_file(path: Path, regimes: Sequence[tuple[str, int]], **kwargs: object) -> Path:
    write_candles(regime_candles(regimes, **kwargs), path)  # type: ignore[arg-type]
    return path
