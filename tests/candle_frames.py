"""Small synthetic candle frames for tests of any timeframe (the samples are 1h and 1d)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def candle_frame(opens: Sequence[str] | pd.DatetimeIndex) -> pd.DataFrame:
    """A valid candle frame (see ``engine.candles``) with these UTC open times; the price
    rises by one each candle."""
    timestamps = pd.DatetimeIndex(pd.to_datetime(list(opens), utc=True)).astype(
        "datetime64[ns, UTC]"
    )
    close = [100.0 + i for i in range(len(timestamps))]
    return pd.DataFrame(
        {
            "timestamp": timestamps,
            "open": [c - 0.5 for c in close],
            "high": [c + 1.0 for c in close],
            "low": [c - 1.0 for c in close],
            "close": close,
            "volume": [10.0] * len(close),
        }
    )


def constant_price_file(directory: Path, days: int = 400) -> Path:
    """``directory/flat.csv``: daily candles whose price never moves (one label class)."""
    frame = candle_frame(pd.date_range("2022-01-01", periods=days, freq="1D"))
    frame[["open", "high", "low", "close"]] = 100.0
    path = directory / "flat.csv"
    stamps = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.assign(timestamp=stamps).to_csv(path, index=False)
    return path
