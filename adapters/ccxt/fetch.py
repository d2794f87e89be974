"""Download an exchange's candle history through ccxt into a candle file.

Pages through ``fetch_ohlcv`` with ccxt's rate limiter on, keeps only closed candles,
retries 429s, 5xx and dropped connections with capped backoff, and writes the file
(Parquet or CSV by suffix, atomically) every few pages and on the way out, so an
interrupted download keeps what it had. Run again with the same ``out`` and it resumes
after the file's last candle.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
from tqdm import tqdm

from adapters.ccxt.client import call_with_retry, create_exchange
from engine import candles, timeframes
from engine.clock import NANOS_PER_SECOND, Clock, LiveClock
from engine.timeframes import NANOS_PER_MS


class FetchUsageError(ValueError):
    """The request cannot be served as asked (bad symbol, timeframe, date or file)."""


@dataclass
class DownloadProgress:
    """Live counters of one download; readable by the caller even after an interrupt."""

    resumed_after: pd.Timestamp | None = None
    added: int = 0
    total: int = 0
    pages: int = 0
    written: bool = False


def parse_since(text: str) -> int:
    """``2024-01-01`` or an ISO-8601 time (UTC unless it says otherwise) → Unix ms."""
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise FetchUsageError(f"cannot read the date {text!r} (use e.g. 2024-01-01)") from None
    if stamp is pd.NaT:
        raise FetchUsageError(f"cannot read the date {text!r} (use e.g. 2024-01-01)")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // NANOS_PER_MS)


def check_out_path(path: Path) -> None:
    if path.suffix != ".parquet" and not path.name.endswith((".csv", ".csv.gz")):
        raise FetchUsageError(f"{path}: use a .parquet, .csv or .csv.gz file name")


def read_existing(path: Path, timeframe: str) -> pd.DataFrame:
    """The candles already in ``path``, validated (the resume point is its last row)."""
    try:
        frame, _, _ = candles.read_candles(path, timeframe)
    except candles.CandleFileError as exc:
        raise FetchUsageError(f"cannot resume: {exc}") from None
    # Alignment alone would let 1h candles be appended to a daily file.
    opens = candles.open_times_ns(frame)
    if len(opens) > 1:
        held = timeframes.infer_timeframe(opens)
        if held != timeframe:
            holds = held or f"{timeframes.most_common_step_ns(opens) // NANOS_PER_SECOND}s"
            raise FetchUsageError(
                f"cannot resume: {path} holds {holds} candles, not {timeframe}; "
                "use another --out or the same --timeframe"
            )
    return frame


def read_existing_if_any(path: Path, timeframe: str) -> pd.DataFrame | None:
    return read_existing(path, timeframe) if path.exists() else None


def rows_to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """ccxt OHLCV rows → a candle frame (see ``engine.candles``)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(candles.COLUMNS)
    opens = pd.to_datetime(pd.Series(columns[0], dtype="int64"), unit="ms", utc=True)
    frame = pd.DataFrame({"timestamp": opens.astype("datetime64[ns, UTC]")})
    for name, values in zip(candles.COLUMNS[1:], columns[1:], strict=True):
        frame[name] = pd.to_numeric(pd.Series(values, dtype="object")).astype("float64")
    # Some exchanges leave volume out (None) for candles without trades.
    frame["volume"] = frame["volume"].fillna(0.0)
    return frame


async def download_history(
    *,
    exchange_id: str,
    symbol: str,
    timeframe: str,
    since_ms: int,
    out: Path,
    until_ms: int | None = None,
    page_size: int = 1000,
    retries: int = 5,
    backoff_initial: float = 1.0,
    backoff_max: float = 30.0,
    settle_seconds: float = 2.0,
    checkpoint_pages: int = 20,
    api_base_url: str | None = None,
    options: dict[str, Any] | None = None,
    rate_limit_ms: float | None = None,
    clock: Clock | None = None,
    progress: DownloadProgress | None = None,
    show_progress: bool = True,
) -> DownloadProgress:
    """Append the closed candles from ``since_ms`` (or after ``out``'s last one) to ``out``.

    Raises :class:`FetchUsageError` for a request that cannot work, ccxt's
    ``NetworkError`` when the exchange stays unreachable after ``retries`` retries.
    """
    check_out_path(out)
    if timeframe not in timeframes.TIMEFRAMES:
        known = ", ".join(timeframes.TIMEFRAMES)
        raise FetchUsageError(f"timeframe {timeframe!r} is not a candle-file timeframe ({known})")
    clock = clock or LiveClock()
    state = progress or DownloadProgress()
    settle_ms = int(settle_seconds * 1000)

    # File I/O runs in a thread: a large Parquet file would otherwise stall the loop.
    existing = await asyncio.to_thread(read_existing_if_any, out, timeframe)
    start_ms = since_ms
    if existing is not None and len(existing):
        last = existing["timestamp"].iloc[-1]
        state.resumed_after = last
        start_ms = timeframes.close_ms(int(last.value // NANOS_PER_MS), timeframe)

    exchange = create_exchange(
        exchange_id, api_base_url=api_base_url, options=options, rate_limit_ms=rate_limit_ms
    )
    retry = functools.partial(
        call_with_retry,
        exchange,
        retries=retries,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
    )
    new_rows: list[list[Any]] = []

    def write_sync() -> None:
        if not new_rows:
            return
        frame = rows_to_frame(new_rows)
        if existing is not None:
            frame = pd.concat([existing, frame], ignore_index=True)
        candles.write_candles(frame, out)
        state.total = len(frame)
        state.written = True

    async def write() -> None:
        await asyncio.to_thread(write_sync)

    bar: tqdm[Any] | None = None
    try:
        await retry(exchange.load_markets, what="load_markets")
        _check_market(exchange, symbol, timeframe)
        now_ms = clock.timestamp_ns() // NANOS_PER_MS
        end_ms = now_ms if until_ms is None else min(until_ms, now_ms)

        def closed(open_ms: int) -> bool:
            return timeframes.close_ms(open_ms, timeframe) + settle_ms <= now_ms

        bar = tqdm(
            total=max(0, (end_ms - start_ms) // (timeframes.timeframe_seconds(timeframe) * 1000)),
            unit="candle",
            desc=f"{exchange_id} {symbol} {timeframe}",
            file=sys.stderr,
            disable=not show_progress,
        )
        cursor = start_ms
        while closed(cursor) and (until_ms is None or cursor < until_ms):
            fetch = functools.partial(
                exchange.fetch_ohlcv, symbol, timeframe, since=cursor, limit=page_size
            )
            rows = [r for r in await retry(fetch, what="fetch_ohlcv") if r[0] >= cursor]
            state.pages += 1
            if not rows:
                break  # nothing after the cursor yet
            keep = [r for r in rows if closed(r[0]) and (until_ms is None or r[0] < until_ms)]
            new_rows.extend(keep)
            state.added += len(keep)
            bar.update(len(keep))
            if len(keep) < len(rows):
                break  # reached the forming candle or the end of the range
            cursor = timeframes.close_ms(int(rows[-1][0]), timeframe)
            if state.pages % checkpoint_pages == 0:
                await write()
        bar.total = bar.n  # the estimate counted exchange gaps; finish at 100%
        bar.refresh()
    finally:
        # Also on Ctrl-C (task cancelled) or a lasting error: keep what was downloaded.
        await write()
        if bar is not None:
            bar.close()
        await exchange.close()
    if not state.written:
        state.total = 0 if existing is None else len(existing)
    return state


def _check_market(exchange: ccxt.async_support.Exchange, symbol: str, timeframe: str) -> None:
    if symbol not in exchange.markets:
        close = difflib.get_close_matches(symbol.upper(), list(exchange.markets), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise FetchUsageError(f"{exchange.id} has no market {symbol!r}{hint}")
    if exchange.timeframes and timeframe not in exchange.timeframes:
        known = ", ".join(exchange.timeframes)
        raise FetchUsageError(f"{exchange.id} has no timeframe {timeframe!r} (known: {known})")
    if not exchange.has.get("fetchOHLCV"):
        raise FetchUsageError(f"{exchange.id} does not serve candles (no fetchOHLCV)")
