"""The one candle format every adapter reads and writes, and its validation.

A candle frame is a pandas DataFrame with columns ``timestamp`` (candle OPEN time,
``datetime64[ns, UTC]``), ``open``, ``high``, ``low``, ``close``, ``volume`` (float64;
volume in the base asset), one row per candle, strictly ascending. Files are CSV
(optionally gzip-compressed, ``.csv.gz``) with that header and ISO-8601 UTC
timestamps, or Parquet with those columns.

A :class:`~engine.events.Bar` is published when a candle has CLOSED, so its
``ts_event`` is the open time plus the timeframe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.events import Bar

COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
NANOS_PER_SECOND = 1_000_000_000

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}


def timeframe_ns(timeframe: str) -> int:
    """Length of one candle in nanoseconds; a clear error for an unknown timeframe."""
    try:
        return TIMEFRAME_SECONDS[timeframe] * NANOS_PER_SECOND
    except KeyError:
        known = ", ".join(TIMEFRAME_SECONDS)
        raise ValueError(f"unknown timeframe {timeframe!r} (known: {known})") from None


class CandleFileError(ValueError):
    """A candle file breaks a rule; the message names the file, the row and the rule."""

    def __init__(self, path: str | Path, rule: str, detail: str, row: int | None = None) -> None:
        self.path = str(path)
        self.rule = rule
        self.row = row
        where = f"{self.path}, row {row}" if row is not None else self.path
        super().__init__(f"{where}: {rule}: {detail}")


@dataclass(frozen=True, slots=True)
class GapReport:
    """Missing candles between consecutive rows (reported, never filled)."""

    gaps: int
    missing_candles: int
    largest_missing: int
    largest_at: pd.Timestamp | None

    def __str__(self) -> str:
        if not self.gaps:
            return "no gaps"
        return (
            f"{self.gaps} gaps, {self.missing_candles} candles missing, largest "
            f"{self.largest_missing} candles after {self.largest_at:%Y-%m-%dT%H:%M}Z"
        )


def file_row(index: int) -> int:
    """The 1-based line number in a CSV file (line 1 is the header) of frame row ``index``."""
    return index + 2


def write_candles(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a candle frame as Parquet or CSV (by suffix), atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame = frame.loc[:, list(COLUMNS)]
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif path.name.endswith((".csv", ".csv.gz")):
        out = frame.copy()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        compression = "gzip" if path.name.endswith(".gz") else None
        out.to_csv(tmp, index=False, compression=compression)
    else:
        raise ValueError(f"{path}: unsupported candle file type (use .csv, .csv.gz, .parquet)")
    os.replace(tmp, path)


def iter_bars(frame: pd.DataFrame, symbol: str, timeframe: str) -> Iterator[Bar]:
    """``Bar`` events for a validated frame; ``ts_event`` is each candle's close time."""
    step = timeframe_ns(timeframe)
    opens = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    columns = [frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    volumes = frame["volume"].to_numpy(dtype=np.float64)
    for i, open_ns in enumerate(opens.tolist()):
        close_ns = open_ns + step
        yield Bar(
            ts_event=close_ns,
            ts_init=close_ns,
            correlation_id=f"{symbol}|{timeframe}|{close_ns}",
            symbol=symbol,
            timeframe=timeframe,
            open=float(columns[0][i]),
            high=float(columns[1][i]),
            low=float(columns[2][i]),
            close=float(columns[3][i]),
            volume=float(volumes[i]),
        )
