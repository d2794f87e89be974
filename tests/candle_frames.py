"""Small synthetic candle frames for tests of any timeframe (the samples are 1h and 1d)."""

from __future__ import annotations

from collections.abc import Sequence

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
