"""A local stand-in for Binance's public market-data API, for tests of the ccxt adapters.

Why a fake: no exchange is reachable from the machines the tests run on, and a test
against a live exchange could not be deterministic anyway. This server answers on
127.0.0.1 in Binance's own wire format (``/api/v3/exchangeInfo``, ``/api/v3/klines``
and the ``<symbol>@kline_<interval>`` websocket stream), so the real ccxt client —
its request building, parsing, error mapping and rate limiter — is what gets exercised;
only the host differs (see :meth:`FakeBinance.api_base_url`).

It serves real candles (Binance BTC/USDT hourly, the bundled sample) and is
scriptable: ``now_ms`` decides which candles exist and which one is still forming,
:meth:`fail_next` injects HTTP errors such as 429 or 503, :meth:`go_offline` drops
every connection until :meth:`go_online`, and :attr:`requests` records what was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from aiohttp import WSMsgType, web

from adapters.replay.market_data import SAMPLES_DIR

# The bundled copy of the shared Binance BTC/USDT hourly file (same sha256).
SHARED_HOURLY = SAMPLES_DIR / "BTC-USDT_1h.csv.gz"
HOUR_MS = 3_600_000
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": HOUR_MS, "1d": 86_400_000}


def load_source_rows(start: str, end: str, path: Path = SHARED_HOURLY) -> pd.DataFrame:
    """Rows of the shared hourly file with ``start <= open < end``, numbers kept as strings."""
    frame = pd.read_csv(path, dtype=str)
    opens = pd.to_datetime(frame["timestamp"], utc=True)
    keep = (opens >= pd.Timestamp(start, tz="UTC")) & (opens < pd.Timestamp(end, tz="UTC"))
    return frame.loc[keep].reset_index(drop=True)


@dataclass(frozen=True)
class Candle:
    """One source candle: open time in ms and the source's decimal strings."""

    open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> list[Candle]:
        opens = pd.to_datetime(rows["timestamp"], utc=True).astype("int64") // 1_000_000
        return [
            cls(int(t), r.open, r.high, r.low, r.close, r.volume)
            for t, r in zip(opens.tolist(), rows.itertuples(index=False), strict=True)
        ]

    def forming(self) -> Candle:
        """How this candle looks part-way through: only its opening trade so far."""
        half_volume = f"{float(self.volume) / 2:.8f}"
        return Candle(self.open_ms, self.open, self.open, self.open, self.open, half_volume)


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status`` 0 means the connection was dropped."""

    path: str
    query: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Failure:
    status: int
    path: str
    retry_after: int | None
    after: int  # matching requests still to serve normally before this failure


@dataclass
class FakeBinance:
    """Binance spot market data for one symbol and interval, on a free loopback port."""

    candles: list[Candle]
    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    interval: str = "1h"
    now_ms: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    port: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    _offline: bool = False
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        if not self.now_ms and self.candles:
            self.now_ms = self.candles[-1].open_ms + self.step_ms  # everything closed

    @property
    def step_ms(self) -> int:
        return INTERVAL_MS[self.interval]

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        # ccxt also loads Binance's futures markets; this fake has none of those.
        app.router.add_get("/fapi/v1/exchangeInfo", self._no_markets)
        app.router.add_get("/dapi/v1/exchangeInfo", self._no_markets)
        app.router.add_get("/ws/{stream:.*}", self._websocket)
        app.router.add_get("/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[FakeBinance]:
        """Serve from a background thread's loop, for code that calls ``asyncio.run``."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    @property
    def api_base_url(self) -> str:
        """Where every Binance host is redirected: ``/api/v3/...`` and ``/ws/...`` live here."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        path: str = "/api/v3/klines",
        retry_after: int | None = None,
        after: int = 0,
    ) -> None:
        """Answer ``times`` requests to ``path`` with HTTP ``status``, once ``after`` more
        have been served normally."""
        self._failures.extend(
            _Failure(status, path, retry_after, after if i == 0 else 0) for i in range(times)
        )

    def clear_failures(self) -> None:
        self._failures.clear()

    async def go_offline(self) -> None:
        """Drop every websocket and refuse (reset) every request until :meth:`go_online`."""
        self._offline = True
        for ws in list(self._sockets):
            transport = ws._req.transport if ws._req is not None else None
            if transport is not None:
                transport.abort()
        self._sockets.clear()

    def go_online(self) -> None:
        self._offline = False

    async def advance(self, now_ms: int) -> None:
        """Move market time; websocket subscribers get each candle's final update and the
        first update of the candle now forming, in order, as Binance sends them."""
        before = self.now_ms
        self.now_ms = now_ms
        for candle in self._visible():
            closes = candle.open_ms + self.step_ms
            if before < closes <= now_ms:
                await self._push(candle, final=True)
        current = self.forming_candle()
        if current is not None and current.open_ms + self.step_ms > before:
            await self._push(current.forming(), final=False)

    def kline_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/api/v3/klines"]

    def forming_candle(self) -> Candle | None:
        """The candle that has opened but not closed at ``now_ms`` (its true final values)."""
        for candle in self.candles:
            if candle.open_ms <= self.now_ms < candle.open_ms + self.step_ms:
                return candle
        return None

    # -- Binance's format --------------------------------------------------------------

    def _visible(self) -> list[Candle]:
        return [c for c in self.candles if c.open_ms <= self.now_ms]

    def _kline(self, c: Candle) -> list[object]:
        """One row of ``GET /api/v3/klines``, field for field as Binance sends it."""
        quote_volume = f"{float(c.volume) * float(c.close):.8f}"
        return [
            c.open_ms,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.open_ms + self.step_ms - 1,
            quote_volume,
            0,
            "0.00000000",
            "0.00000000",
            "0",
        ]

    def _served(self, c: Candle) -> Candle:
        return c.forming() if c.open_ms + self.step_ms > self.now_ms else c

    async def _klines(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        if (early := self._early_answer(request)) is not None:
            return early
        if query.get("symbol") != self.symbol:
            return self._answer(request, 400, {"code": -1121, "msg": "Invalid symbol."})
        if query.get("interval") != self.interval:
            return self._answer(request, 400, {"code": -1120, "msg": "Invalid interval."})
        limit = min(int(query.get("limit", 500)), 1000)
        rows = self._visible()
        if "startTime" in query:
            rows = [c for c in rows if c.open_ms >= int(query["startTime"])]
        if "endTime" in query:
            rows = [c for c in rows if c.open_ms <= int(query["endTime"])]
        # Binance: from startTime forwards if given, otherwise the most recent `limit`.
        rows = rows[:limit] if "startTime" in query else rows[-limit:]
        return self._answer(request, 200, [self._kline(self._served(c)) for c in rows])

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        if (early := self._early_answer(request)) is not None:
            return early
        market = {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": True,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
        body = {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                }
            ],
            "exchangeFilters": [],
            "symbols": [market],
        }
        return self._answer(request, 200, body)

    async def _no_markets(self, request: web.Request) -> web.StreamResponse:
        if (early := self._early_answer(request)) is not None:
            return early
        body = {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [], "symbols": []}
        return self._answer(request, 200, body)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, 404, {"code": -1, "msg": "not served by the fake"})

    def _early_answer(self, request: web.Request) -> web.StreamResponse | None:
        """A dropped connection or a scripted failure, if one applies to this request."""
        if self._offline:
            self.requests.append(RecordedRequest(request.path, dict(request.query), 0))
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        for i, failure in enumerate(self._failures):
            if failure.path == request.path:
                if failure.after > 0:
                    failure.after -= 1
                    return None
                del self._failures[i]
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                if failure.status == 429:
                    body = {
                        "code": -1003,
                        "msg": "Too much request weight used; current limit is 6000 request "
                        "weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                        "to avoid polling the API.",
                    }
                    return self._answer(request, 429, body, headers)
                return self._answer(request, failure.status, "<html>Bad Gateway</html>", headers)
        return None

    def _answer(
        self,
        request: web.Request,
        status: int,
        body: object,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self.requests.append(RecordedRequest(request.path, dict(request.query), status))
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html", headers=headers)
        return web.json_response(body, status=status, headers=headers)

    # -- websocket stream --------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if (early := self._early_answer(request)) is not None:
            return early
        self.requests.append(RecordedRequest(request.path, {}, 101))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("method") == "SUBSCRIBE":
                    self.subscriptions.extend(data["params"])
                    await ws.send_json({"result": None, "id": data["id"]})
                    current = self.forming_candle()
                    if current is not None:
                        await ws.send_json(self._kline_event(current.forming(), final=False))
        finally:
            self._sockets.discard(ws)
        return ws

    def _kline_event(self, c: Candle, final: bool) -> dict[str, object]:
        return {
            "e": "kline",
            "E": self.now_ms,
            "s": self.symbol,
            "k": {
                "t": c.open_ms,
                "T": c.open_ms + self.step_ms - 1,
                "s": self.symbol,
                "i": self.interval,
                "f": 0,
                "L": 0,
                "o": c.open,
                "c": c.close,
                "h": c.high,
                "l": c.low,
                "v": c.volume,
                "n": 0,
                "x": final,
                "q": "0",
                "V": "0",
                "Q": "0",
                "B": "0",
            },
        }

    async def _push(self, candle: Candle, final: bool) -> None:
        event = self._kline_event(candle, final)
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_json(event)
