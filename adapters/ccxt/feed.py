"""Live closed candles from a centralised exchange through ccxt, published as ``Bar`` events.

``CcxtBarFeed`` streams with ccxt.pro's ``watch_ohlcv`` where the exchange has it and
polls ``fetch_ohlcv`` otherwise. Either way a candle is published once it has closed,
exactly once and in order: the forming candle is never published, and after a
disconnect the feed is DEGRADED until it has reconnected and fetched, over REST, every
candle that closed meanwhile. Retries back off exponentially up to a cap.

"Now" comes from the engine clock, so tests decide when a candle has closed. Backoff
and poll waits are real time (``asyncio.sleep``): they pace requests to an outside
server, which a simulated clock cannot speed up.

The helpers for building a ccxt client (:func:`create_exchange`) and retrying a call
(:func:`call_with_retry`) are shared with the history download in ``fetch.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
import structlog
from pydantic import Field, model_validator

from engine.clock import NANOS_PER_SECOND
from engine.component import Component, ComponentContext, ComponentState
from engine.config import StrictModel
from engine.events import Bar

T = TypeVar("T")
NANOS_PER_MS = 1_000_000
DISCONNECTED = "disconnected from "  # the reason of a DEGRADED state this feed can end
Candle = list[Any]  # ccxt OHLCV row: [open_ms, open, high, low, close, volume]

log = structlog.get_logger("adapters.ccxt.feed")

# 429/418 (DDoSProtection, RateLimitExceeded), 5xx (ExchangeNotAvailable), timeouts and
# dropped connections all derive from NetworkError: worth retrying. Anything else ccxt
# raises (bad symbol, bad request) will not fix itself.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ccxt.NetworkError,)


class UnknownExchangeError(ValueError):
    """The exchange id is not one ccxt knows."""


# -- building the client ---------------------------------------------------------------


def rebase_urls(urls: Any, base_url: str) -> Any:
    """``urls`` (ccxt's ``urls['api']`` tree) with every host replaced by ``base_url``.

    Paths are kept, so ``https://api.binance.com/api/v3`` becomes ``<base>/api/v3`` and
    ``wss://stream.binance.com:9443/ws`` becomes ``ws(s)://<base host>/ws``: one local
    server or proxy then stands in for all of an exchange's hosts, and no request can
    leave for the real ones.
    """
    if isinstance(urls, Mapping):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if not isinstance(urls, str) or "://" not in urls:
        return urls
    base = urlsplit(base_url.rstrip("/"))
    original = urlsplit(urls)
    scheme = base.scheme
    if original.scheme in ("ws", "wss"):
        scheme = "wss" if base.scheme == "https" else "ws"
    query = f"?{original.query}" if original.query else ""
    return f"{scheme}://{base.netloc}{base.path}{original.path}{query}"


def create_exchange(
    exchange_id: str,
    *,
    streaming: bool = False,
    api_base_url: str | None = None,
    urls: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    rate_limit_ms: float | None = None,
    timeout_seconds: float = 10.0,
) -> ccxt.async_support.Exchange:
    """An async ccxt client with its rate limiter on (ccxt.pro's class if ``streaming``).

    ``api_base_url`` redirects every host (see :func:`rebase_urls`); ``urls`` is then
    deep-merged into ``urls['api']`` for finer overrides. Must be called inside the
    event loop that will use the client.
    """
    module = ccxt.pro if streaming else ccxt.async_support
    known = ccxt.pro.exchanges if streaming else ccxt.exchanges
    if exchange_id not in known:
        raise UnknownExchangeError(_unknown_exchange_message(exchange_id, streaming))
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_seconds * 1000),
        "options": dict(options or {}),
    }
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange: ccxt.async_support.Exchange = getattr(module, exchange_id)(config)
    if api_base_url:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], api_base_url)
    if urls:
        exchange.urls["api"] = exchange.deep_extend(exchange.urls["api"], dict(urls))
    return exchange


def _unknown_exchange_message(exchange_id: str, streaming: bool) -> str:
    if streaming and exchange_id in ccxt.exchanges:
        return f"exchange {exchange_id!r} has no ccxt.pro (websocket) support; use mode 'poll'"
    close = difflib.get_close_matches(exchange_id.lower(), ccxt.exchanges, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown exchange {exchange_id!r}{hint}; see ccxt.exchanges for the list"


# -- retrying --------------------------------------------------------------------------


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): doubling, capped."""
    return min(maximum, initial * 2**attempt)


def retry_after_seconds(exchange: ccxt.async_support.Exchange, error: Exception) -> float:
    """The server's ``Retry-After`` for a rate-limit answer (0 when absent)."""
    if not isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return 0.0
    headers = exchange.last_response_headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0


async def call_with_retry(
    exchange: ccxt.async_support.Exchange,
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff_initial: float,
    backoff_max: float,
    what: str = "request",
) -> T:
    """``await call()``, retrying network errors, 429s and 5xx with capped backoff.

    A rate-limit answer's ``Retry-After`` is honoured when it asks for longer. After
    ``retries`` failed retries the last error is raised.
    """
    for attempt in range(retries + 1):
        try:
            return await call()
        except RETRYABLE_ERRORS as exc:
            if attempt >= retries:
                raise
            delay = max(
                backoff_delay(attempt, backoff_initial, backoff_max),
                retry_after_seconds(exchange, exc),
            )
            log.warning(
                "ccxt.retry",
                exchange=exchange.id,
                what=what,
                error=type(exc).__name__,
                attempt=attempt + 1,
                delay_s=delay,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# -- the component ---------------------------------------------------------------------


class CcxtFeedConfig(StrictModel):
    exchange: str = Field("binance", min_length=1, description="ccxt exchange id.")
    symbol: str = Field("BTC/USDT", min_length=3, description="Unified ccxt symbol.")
    timeframe: str = Field("1h", min_length=2, description="Candle length, e.g. `1m`, `1h`.")
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
        1.0, gt=0, le=600, description="First wait before reconnecting; doubles each failure."
    )
    backoff_max_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between reconnection attempts."
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
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.streaming = False
        self.published = 0
        self.last_open_ms: int | None = None  # newest candle published (or skipped at start)
        self._step_ms = 0
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
        self._step_ms = int(exchange.parse_timeframe(s.timeframe) * 1000)

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
        if self.last_open_ms is None or not self._step_ms:
            return 0.0
        due_ns = (self.last_open_ms + 2 * self._step_ms) * NANOS_PER_MS
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
                delay = backoff_delay(attempt, s.backoff_initial_seconds, s.backoff_max_seconds)
                delay = max(delay, retry_after_seconds(self.exchange, exc))
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
                since = self.last_open_ms + self._step_ms
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
                if open_ms >= newest or (open_ms + self._step_ms) * NANOS_PER_MS > now_ns:
                    break
                await self._fill_gap_before(open_ms)
                await self._publish(latest.pop(open_ms))
            # Candles that closed while we were (re)subscribing never come over the
            # stream: once the one before the newest has settled, fetch them over REST.
            if gap_checked_before != newest and self._closed_over_rest(newest - self._step_ms):
                gap_checked_before = newest
                await self._fill_gap_before(newest)

    async def _fill_gap_before(self, open_ms: int) -> None:
        """Publish from REST any closed candles between the last published and ``open_ms``."""
        if self.last_open_ms is not None and open_ms > self.last_open_ms + self._step_ms:
            await self._catch_up(before_open_ms=open_ms)

    def _closed_over_rest(self, open_ms: int) -> bool:
        close_ns = (open_ms + self._step_ms) * NANOS_PER_MS
        settle_ns = int(self.settings.settle_seconds * NANOS_PER_SECOND)
        return close_ns + settle_ns <= self.clock.timestamp_ns()

    async def _publish(self, row: Candle) -> None:
        open_ms = int(row[0])
        if self.last_open_ms is not None and open_ms <= self.last_open_ms:
            return  # already published
        if self.last_open_ms is not None and open_ms > self.last_open_ms + self._step_ms:
            missing = (open_ms - self.last_open_ms) // self._step_ms - 1
            self.log.info("ccxt_feed.exchange_gap", missing_candles=missing, before_open_ms=open_ms)
        s = self.settings
        close_ns = (open_ms + self._step_ms) * NANOS_PER_MS
        bar = Bar(
            ts_event=close_ns,
            ts_init=self.clock.timestamp_ns(),
            correlation_id=f"{s.symbol}|{s.timeframe}|{close_ns}",
            symbol=s.symbol,
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
