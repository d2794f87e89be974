"""Live closed candles from a centralised exchange through ccxt, published as ``Bar`` events.

``CcxtBarFeed`` streams with ccxt.pro's ``watch_ohlcv`` where the exchange has it and
polls ``fetch_ohlcv`` otherwise. Either way a candle is published once it has closed,
exactly once and in order: the forming candle is never published, and after a
disconnect the feed is DEGRADED until it has reconnected and fetched, over REST, every
candle that closed meanwhile. Reconnections wait as :func:`adapters.ccxt.client.retry_delay`
says: exponential backoff up to a cap, with jitter, never shorter than a Retry-After.

"Now" comes from the engine clock, so tests decide when a candle has closed. Backoff
and poll waits are real time (``asyncio.sleep``): they pace requests to an outside
server, which a simulated clock cannot speed up.

Candle boundaries come from :mod:`engine.timeframes`, so a ``1M`` candle closes when
the next calendar month opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, Literal

import ccxt
import ccxt.async_support
import ccxt.pro
import numpy as np
from pydantic import Field, field_validator, model_validator

from adapters.ccxt.client import (
    RETRYABLE_ERRORS,
    Random,
    create_exchange,
    retry_after_seconds,
    retry_delay,
)
from engine import timeframes
from engine.clock import NANOS_PER_SECOND
from engine.component import Component, ComponentContext, ComponentState
from engine.config import StrictModel
from engine.events import Bar, bar_correlation_id
from engine.timeframes import NANOS_PER_MS

DISCONNECTED = "disconnected from "  # the reason of a DEGRADED state this feed can end
Candle = list[Any]  # ccxt OHLCV row: [open_ms, open, high, low, close, volume]

# -- the component ---------------------------------------------------------------------


class CcxtFeedConfig(StrictModel):
    exchange: str = Field("binance", min_length=1, description="ccxt exchange id.")
    symbol: str = Field("BTC/USDT", min_length=3, description="Unified ccxt symbol.")
    bar_symbol: str | None = Field(
        None,
        pattern=r"^[^/]+/[^/]+$",
        description="Publish the bars under this market symbol instead: the market they "
        "price in the engine, e.g. a DEX pool's `WETH/USDC` priced by the exchange's "
        "`ETH/USDT`; unset: `symbol`.",
    )
    timeframe: str = Field(
        "1h", min_length=2, description="Candle length, e.g. `1m`, `1h`, `1w`, `1M` (ccxt's names)."
    )
    mode: Literal["auto", "watch", "poll"] = Field(
        "auto",
        description="`watch`: ccxt.pro websocket; `poll`: REST `fetch_ohlcv`; "
        "`auto`: watch where the exchange supports it, else poll.",
    )
    poll_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Time between REST polls in `poll` mode."
    )
    settle_seconds: float = Field(
        2.0,
        ge=0,
        le=600,
        description="A candle fetched over REST counts as closed this long after its close "
        "time, so the exchange has aggregated its last trades.",
    )
    history_candles: int = Field(
        0,
        ge=0,
        le=1000,
        description="Closed candles published at start (warm-up for indicators); "
        "0 starts with the next candle to close.",
    )
    page_size: int = Field(
        500, ge=1, le=1000, description="Candles asked for per REST request when catching up."
    )
    backoff_initial_seconds: float = Field(
        1.0,
        gt=0,
        le=600,
        description="First wait before reconnecting; doubles each failure. Random jitter "
        "adds up to as much again.",
    )
    backoff_max_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Cap of the doubling wait (jitter can add as much again); a longer "
        "Retry-After from the exchange is obeyed.",
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Per-request timeout.")
    stale_after_seconds: float = Field(
        60.0,
        gt=0,
        description="DEGRADED (so /ready says the market data is stale) when the next "
        "candle is this long overdue: settled but not received.",
    )
    rate_limit_ms: float | None = Field(
        None, gt=0, description="Override ccxt's pause between requests (its default if unset)."
    )
    api_base_url: str | None = Field(
        None,
        description="Send every REST and websocket request to this base URL instead of the "
        "exchange's hosts (a self-hosted proxy, or the tests' local server).",
    )
    urls: dict[str, Any] = Field(
        default_factory=dict, description="Merged into ccxt's `urls['api']` (after the base URL)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the ccxt client's `options`."
    )

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        return timeframes.check_timeframe(value)

    @model_validator(mode="after")
    def _check_backoff(self) -> CcxtFeedConfig:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_initial_seconds")
        return self


class CcxtBarFeed(Component):
    """Publishes each closed candle of one symbol and timeframe as a ``Bar``, once, in order."""

    Config = CcxtFeedConfig

    def __init__(
        self,
        name: str,
        settings: CcxtFeedConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
        *,
        random_source: Random = random.random,
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.streaming = False
        self.published = 0
        self.last_open_ms: int | None = None  # newest candle published (or skipped at start)
        self._random = random_source  # the backoff's jitter
        self._exchange: ccxt.async_support.Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        s = self.settings
        # ccxt.pro's classes also do REST, so one client serves the stream and backfills.
        want_stream = s.mode == "watch" or (s.mode == "auto" and s.exchange in ccxt.pro.exchanges)
        exchange = create_exchange(
            s.exchange,
            streaming=want_stream,
            api_base_url=s.api_base_url,
            urls=s.urls,
            options=s.options,
            rate_limit_ms=s.rate_limit_ms,
            timeout_seconds=s.timeout_seconds,
        )
        self.streaming = want_stream and bool(exchange.has.get("watchOHLCV"))
        self._exchange = exchange
        if s.mode == "watch" and not self.streaming:
            raise ValueError(f"{s.exchange}: ccxt.pro has no watch_ohlcv; use mode 'poll'")
        if exchange.timeframes and s.timeframe not in exchange.timeframes:
            known = ", ".join(exchange.timeframes)
            raise ValueError(f"{s.exchange} has no timeframe {s.timeframe!r} (known: {known})")

    async def on_all_started(self) -> None:
        # Publishing starts once every subscriber is running, so none misses a bar.
        self._task = asyncio.create_task(self._run(), name=f"{self.name}.run")
        self._watchdog = asyncio.create_task(self._watch_freshness(), name=f"{self.name}.fresh")

    async def on_stop(self) -> None:
        try:
            for task in (self._task, self._watchdog):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            if self._exchange is not None:
                await self._exchange.close()

    @property
    def exchange(self) -> ccxt.async_support.Exchange:
        if self._exchange is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._exchange

    # -- freshness -----------------------------------------------------------------------

    def overdue_seconds(self) -> float:
        """How long the candle after the newest one published is overdue (0 if not):
        due once it has closed and settled."""
        if self.last_open_ms is None:
            return 0.0
        due_ns = self._close_ms(self._close_ms(self.last_open_ms)) * NANOS_PER_MS
        due_ns += int(self.settings.settle_seconds * NANOS_PER_SECOND)
        return max(0.0, (self.clock.timestamp_ns() - due_ns) / NANOS_PER_SECOND)

    async def _watch_freshness(self) -> None:
        """A connection can stay up while the exchange sends nothing new: DEGRADED while
        the next candle is more than ``stale_after_seconds`` overdue."""
        stale = "stale: "
        while True:
            await asyncio.sleep(min(max(self.settings.stale_after_seconds / 4, 0.05), 15.0))
            overdue = self.overdue_seconds()
            if overdue > self.settings.stale_after_seconds:
                if self.state is ComponentState.RUNNING:
                    self.degrade(f"{stale}the next candle is {overdue:.0f} s overdue")
            elif self.state is ComponentState.DEGRADED and self.health().reason.startswith(stale):
                self.recover()

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._connection_loop()
        except Exception as exc:
            self.log.exception("ccxt_feed.crashed")
            self.fault(f"feed crashed: {type(exc).__name__}: {exc}")

    async def _connection_loop(self) -> None:
        s = self.settings
        attempt = 0
        while True:
            try:
                if not self.exchange.markets:
                    await self.exchange.load_markets()
                    self.exchange.market(s.symbol)  # BadSymbol if the exchange has no such market
                await self._catch_up()
                if self.health().reason.startswith(DISCONNECTED):
                    self.recover()
                attempt = 0
                if self.streaming:
                    await self._stream()
                else:
                    await asyncio.sleep(s.poll_interval_seconds)
            except RETRYABLE_ERRORS as exc:
                delay = retry_delay(
                    attempt,
                    s.backoff_initial_seconds,
                    s.backoff_max_seconds,
                    retry_after_seconds(self.exchange, exc),
                    self._random,
                )
                if self.state is not ComponentState.DEGRADED:  # keep the first reason
                    self.degrade(f"{DISCONNECTED}{s.exchange}: {type(exc).__name__}")
                self.log.warning(
                    "ccxt_feed.reconnecting",
                    error=type(exc).__name__,
                    attempt=attempt + 1,
                    delay_s=delay,
                )
                attempt += 1
                await asyncio.sleep(delay)
            except ccxt.BaseError as exc:
                self.fault(f"{type(exc).__name__}: {exc}")
                return

    async def _catch_up(self, before_open_ms: int | None = None) -> None:
        """Publish, from REST, every closed candle after the last one published.

        At the very start (nothing published yet) only the newest ``history_candles``
        closed candles are published. ``before_open_ms`` stops short of a candle the
        stream is about to deliver itself.
        """
        s = self.settings
        while True:
            if self.last_open_ms is None:
                limit = s.history_candles + 2  # the forming candle and at least one closed
                rows = await self.exchange.fetch_ohlcv(s.symbol, s.timeframe, limit=limit)
            else:
                since = self._close_ms(self.last_open_ms)
                rows = await self.exchange.fetch_ohlcv(
                    s.symbol, s.timeframe, since=since, limit=s.page_size
                )
            closed = [r for r in rows if self._closed_over_rest(r[0])]
            if before_open_ms is not None:
                closed = [r for r in closed if r[0] < before_open_ms]
            if self.last_open_ms is None:
                for row in closed[-s.history_candles :] if s.history_candles else []:
                    await self._publish(row)
                if closed and self.last_open_ms is None:
                    self.last_open_ms = int(closed[-1][0])
                return
            before = self.last_open_ms
            for row in closed:
                await self._publish(row)
            full_page_all_closed = len(rows) >= s.page_size and len(closed) == len(rows)
            if not full_page_all_closed or self.last_open_ms == before:
                return

    async def _stream(self) -> None:
        """Publish candles from ``watch_ohlcv`` as they close; returns only by raising.

        ccxt drops Binance's "closed" flag, so a streamed candle counts as final once a
        newer candle has appeared on the stream (the exchange sends a candle's last update
        before the next one's first) and the clock has passed its close time.
        """
        s = self.settings
        latest: dict[int, Candle] = {}  # newest streamed values of unpublished candles
        gap_checked_before: int | None = None
        while True:
            for row in await self.exchange.watch_ohlcv(s.symbol, s.timeframe):
                if self.last_open_ms is None or row[0] > self.last_open_ms:
                    latest[int(row[0])] = row
            if not latest:
                continue
            newest = max(latest)
            now_ns = self.clock.timestamp_ns()
            for open_ms in sorted(latest):
                if open_ms >= newest or self._close_ms(open_ms) * NANOS_PER_MS > now_ns:
                    break
                await self._fill_gap_before(open_ms)
                await self._publish(latest.pop(open_ms))
            # Candles that closed while we were (re)subscribing never come over the
            # stream: once the one before the newest has settled, fetch them over REST.
            if gap_checked_before != newest and self._settled(newest):
                gap_checked_before = newest
                await self._fill_gap_before(newest)

    async def _fill_gap_before(self, open_ms: int) -> None:
        """Publish from REST any closed candles between the last published and ``open_ms``."""
        if self.last_open_ms is not None and open_ms > self._close_ms(self.last_open_ms):
            await self._catch_up(before_open_ms=open_ms)

    def _close_ms(self, open_ms: int) -> int:
        """Close time of a candle: also the next candle's open."""
        return timeframes.close_ms(open_ms, self.settings.timeframe)

    def _closed_over_rest(self, open_ms: int) -> bool:
        return self._settled(self._close_ms(open_ms))

    def _settled(self, close_ms: int) -> bool:
        """Whether a candle closing at ``close_ms`` has closed and settled by now."""
        settle_ns = int(self.settings.settle_seconds * NANOS_PER_SECOND)
        return close_ms * NANOS_PER_MS + settle_ns <= self.clock.timestamp_ns()

    async def _publish(self, row: Candle) -> None:
        s = self.settings
        open_ms = int(row[0])
        if self.last_open_ms is not None and open_ms <= self.last_open_ms:
            return  # already published
        if self.last_open_ms is not None and open_ms > self._close_ms(self.last_open_ms):
            opens_ns = np.array([self.last_open_ms, open_ms]) * NANOS_PER_MS
            missing = int(timeframes.missing_between(opens_ns, s.timeframe)[0])
            self.log.info("ccxt_feed.exchange_gap", missing_candles=missing, before_open_ms=open_ms)
        close_ns = self._close_ms(open_ms) * NANOS_PER_MS
        symbol = s.bar_symbol or s.symbol
        bar = Bar(
            ts_event=close_ns,
            ts_init=self.clock.timestamp_ns(),
            correlation_id=bar_correlation_id(symbol, s.timeframe, close_ns),
            symbol=symbol,
            timeframe=s.timeframe,
            open=float(row[1]),
            high=float(row[2]),
            low=float(row[3]),
            close=float(row[4]),
            volume=float(row[5] or 0.0),
        )
        self.last_open_ms = open_ms
        self.published += 1
        await self.bus.publish(bar)
