"""The one candle format every adapter reads and writes, and its validation.

A candle frame is a pandas DataFrame with columns ``timestamp`` (candle OPEN time,
``datetime64[ns, UTC]``), ``open``, ``high``, ``low``, ``close``, ``volume`` (float64;
volume in the base asset), one row per candle, strictly ascending. Files are CSV
(optionally gzip-compressed, ``.csv.gz``) with that header and ISO-8601 UTC
timestamps, or Parquet with those columns. Only regular files of at most
:data:`MAX_CANDLE_FILE_BYTES` are read (a CSV also at most that once decompressed),
checked before reading: ``/dev/zero`` behind a ``.csv`` name is refused at once.

A :class:`~engine.events.Bar` is published when a candle has CLOSED, so its
``ts_event`` is the next candle's open time: the open plus the timeframe, or the next
month's start for ``1M`` (:mod:`engine.timeframes` has the boundary rules).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd

from engine import timeframes
from engine.events import Bar, bar_correlation_id
from engine.safe_files import (
    CappedReader,
    FileTooLargeError,
    UnreadableFileError,
    open_regular_file,
)

COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

RowNumber = Callable[[int], int]  # frame index -> row number shown in errors

DATA_ROOTS_GROUP = "trade_engine.data_roots"

# Ten years of minute candles are about 400 MB of CSV; pandas needs several times a
# file's size in memory to parse it.
MAX_CANDLE_FILE_BYTES = 512 * 1024 * 1024


def resolve_data_path(path: str) -> Path:
    """``ROOT/NAME`` → that file of a registered data root (``samples/BTC-USD_1d.csv``: the
    bundled sample); anything else is a normal path."""
    root_name, sep, rest = path.partition("/")
    if sep:
        for entry_point in entry_points(group=DATA_ROOTS_GROUP, name=root_name):
            return Path(entry_point.load()) / rest
    return Path(path)


def utc_timestamp(text: str) -> pd.Timestamp:
    """Parse ISO-8601; a time without a zone is taken as UTC."""
    stamp = pd.Timestamp(text)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


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


_UTC_SUFFIXES = ("Z", "+00:00", "+0000")


def read_candles(
    path: str | Path, timeframe: str | None = None
) -> tuple[pd.DataFrame, str, GapReport]:
    """Load and validate a candle file; returns the frame, its timeframe and its gaps.

    ``timeframe`` is checked against the data when given, inferred (the most common
    step between rows; calendar months for ``1M``) when not. Every rule failure raises
    :class:`CandleFileError` naming the file, the first offending row (the line number
    in a CSV, the 1-based row in a Parquet file) and the rule. Gaps are reported, never
    filled.
    """
    path = Path(path)
    if not path.exists():
        raise CandleFileError(path, "file", "does not exist")
    name = path.name
    is_csv = name.endswith((".csv", ".csv.gz"))
    if not is_csv and path.suffix != ".parquet":
        raise CandleFileError(path, "file type", "use .csv, .csv.gz or .parquet")
    try:
        handle = open_regular_file(path, MAX_CANDLE_FILE_BYTES)
    except UnreadableFileError as exc:
        raise _refused(path, exc) from None
    except OSError as exc:
        raise CandleFileError(path, "readable", exc.strerror or str(exc)) from None
    try:
        with handle:
            if is_csv:
                text = gzip.GzipFile(fileobj=handle) if name.endswith(".gz") else handle
                capped = CappedReader(text, MAX_CANDLE_FILE_BYTES)  # type: ignore[arg-type]
                raw = pd.read_csv(capped, dtype=str, keep_default_na=False)
            else:
                raw = pd.read_parquet(handle)
    except UnreadableFileError as exc:
        raise _refused(path, exc) from None
    except Exception as exc:  # any parser error becomes a rule failure
        raise CandleFileError(path, "readable", f"{type(exc).__name__}: {exc}") from None
    row_of = (lambda i: i + 2) if is_csv else (lambda i: i + 1)
    _check_columns(path, list(raw.columns))
    if raw.empty:
        raise CandleFileError(path, "not empty", "the file has no candles")
    frame = pd.DataFrame({"timestamp": _parse_timestamps(path, raw["timestamp"], row_of)})
    for column in COLUMNS[1:]:
        frame[column] = _parse_numbers(path, raw[column], column, row_of)
    _check_order(path, frame, row_of)
    _check_prices(path, frame, row_of)
    timeframe = _check_interval(path, frame, timeframe, row_of)
    return frame, timeframe, _gap_report(frame, timeframe)


def _refused(path: Path, exc: UnreadableFileError) -> CandleFileError:
    return CandleFileError(path, "size" if isinstance(exc, FileTooLargeError) else "file", str(exc))


def _check_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in columns]
    unexpected = [c for c in columns if c not in COLUMNS]
    if missing or unexpected:
        detail = f"expected columns {', '.join(COLUMNS)}"
        if missing:
            detail += f"; missing {', '.join(missing)}"
        if unexpected:
            detail += f"; unexpected {', '.join(map(str, unexpected))}"
        raise CandleFileError(path, "header", detail)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _parse_timestamps(path: Path, column: pd.Series, row_of: RowNumber) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is None:
            raise CandleFileError(path, "UTC timestamps", "timestamps have no time zone", 1)
        return column.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    text = column.astype(str).str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = _first(bad)
        raise CandleFileError(
            path, "parseable timestamp", f"cannot parse {text.iloc[i]!r}", row_of(i)
        )
    not_utc = ~text.str.endswith(_UTC_SUFFIXES).to_numpy()
    if not_utc.any():
        i = _first(not_utc)
        raise CandleFileError(
            path,
            "UTC timestamps",
            f"{text.iloc[i]!r} is not marked UTC (end it with Z or +00:00)",
            row_of(i),
        )
    return parsed.astype("datetime64[ns, UTC]")


def _parse_numbers(path: Path, column: pd.Series, name: str, row_of: RowNumber) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        i = _first(bad)
        raise CandleFileError(
            path, "numeric values", f"{name} is {column.iloc[i]!r}, not a number", row_of(i)
        )
    return values


def _check_order(path: Path, frame: pd.DataFrame, row_of: RowNumber) -> None:
    ns = open_times_ns(frame)
    steps = np.diff(ns)
    if (steps == 0).any():
        i = _first(steps == 0) + 1
        stamp = frame["timestamp"].iloc[i]
        raise CandleFileError(path, "no duplicates", f"timestamp {stamp} repeats", row_of(i))
    if (steps < 0).any():
        i = _first(steps < 0) + 1
        raise CandleFileError(
            path,
            "strictly ascending",
            f"{frame['timestamp'].iloc[i]} comes after {frame['timestamp'].iloc[i - 1]}",
            row_of(i),
        )


def _check_prices(path: Path, frame: pd.DataFrame, row_of: RowNumber) -> None:
    o, h, low, c, v = (frame[col].to_numpy() for col in COLUMNS[1:])
    rules = (
        ("positive prices", (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0), "a price is <= 0"),
        ("low <= open, close <= high", (low > np.minimum(o, c)) | (h < np.maximum(o, c)), ""),
        ("non-negative volume", v < 0, "volume is negative"),
    )
    for rule, bad, detail in rules:
        if bad.any():
            i = _first(bad)
            values = f"open={o[i]} high={h[i]} low={low[i]} close={c[i]} volume={v[i]}"
            raise CandleFileError(path, rule, detail or values, row_of(i))


def _check_interval(
    path: Path, frame: pd.DataFrame, timeframe: str | None, row_of: RowNumber
) -> str:
    ns = open_times_ns(frame)
    if timeframe is None:
        if len(ns) < 2:
            raise CandleFileError(path, "interval", "one candle: give the timeframe")
        timeframe = timeframes.infer_timeframe(ns)
        if timeframe is None:
            step_s = timeframes.most_common_step_ns(ns) / 1e9
            raise CandleFileError(
                path, "interval", f"most common step {step_s:g}s is not a known timeframe"
            )
    misaligned = timeframes.misaligned(ns, timeframe)
    if misaligned.any():
        i = _first(misaligned)
        raise CandleFileError(
            path,
            "interval alignment",
            f"{frame['timestamp'].iloc[i]} is not on a {timeframe} boundary",
            row_of(i),
        )
    return timeframe


def open_times_ns(frame: pd.DataFrame) -> np.ndarray:
    """The candles' open times as int64 nanoseconds."""
    return frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _gap_report(frame: pd.DataFrame, timeframe: str) -> GapReport:
    missing = timeframes.missing_between(open_times_ns(frame), timeframe)
    gaps = missing > 0
    if not gaps.any():
        return GapReport(0, 0, 0, None)
    largest = int(np.argmax(missing))
    return GapReport(
        gaps=int(gaps.sum()),
        missing_candles=int(missing[gaps].sum()),
        largest_missing=int(missing[largest]),
        largest_at=frame["timestamp"].iloc[largest],
    )


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


CandleRow = tuple[int, float, float, float, float, float]


def iter_rows(frame: pd.DataFrame, timeframe: str) -> Iterator[CandleRow]:
    """``(close_ns, open, high, low, close, volume)`` per candle, as plain Python numbers."""
    close_ns = timeframes.close_times_ns(open_times_ns(frame), timeframe)
    columns = [frame[c].to_numpy(dtype=np.float64).tolist() for c in COLUMNS[1:]]
    return zip(close_ns.tolist(), *columns, strict=True)


def make_bar(row: CandleRow, symbol: str, timeframe: str, ts_init: int | None = None) -> Bar:
    """The ``Bar`` event for one candle row; ``ts_event`` is the candle's close time."""
    close_ns, o, h, low, c, v = row
    return Bar(
        ts_event=close_ns,
        ts_init=close_ns if ts_init is None else ts_init,
        correlation_id=bar_correlation_id(symbol, timeframe, close_ns),
        symbol=symbol,
        timeframe=timeframe,
        open=o,
        high=h,
        low=low,
        close=c,
        volume=v,
    )


def iter_bars(frame: pd.DataFrame, symbol: str, timeframe: str) -> Iterator[Bar]:
    """``Bar`` events for a validated frame, stamped as created at each candle's close."""
    for row in iter_rows(frame, timeframe):
        yield make_bar(row, symbol, timeframe)
