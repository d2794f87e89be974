"""The API's TCP server: an aiohttp app behind limits that slow or vanishing clients
cannot wear down, and the accounting of what it answered.

- **Connections** (:class:`ConnectionCap`): at most ``api.max_connections`` open at
  once. At the cap, a new connection closes the longest-open connection that is not
  answering a request — an idle keep-alive, or one whose header or body is still
  arriving — and has had :data:`SETTLING_SECONDS` to send it; so the clients that cost
  the most make room, and a client that sends its whole request at once gets in. If
  none can be closed (each is answering or has only just opened), the new connection
  gets a 503 and is closed. (The sockets accepted in one pass of the event loop, at
  most the listen backlog, hold file descriptors until then.)
- **Header timeout**: aiohttp's keep-alive timer runs from a connection's opening (or
  its previous answer) until a whole request header has arrived, and bytes trickling in
  do not restart it; ``api.header_timeout_seconds`` sets it.
- **Body timeout** (the :meth:`HttpServer.guard` middleware): a body not whole within
  ``api.body_timeout_seconds`` of its header is answered 408 and its connection closed.
- **A client that goes away** while its request is read or answered is not a server
  error: it is counted as status 499 (nginx's "client closed request"), logged at
  debug, without a traceback. Any other exception in a handler is a bug: logged with
  its traceback, answered 500.

Metrics (``trade_engine_http_*``, see docs/metrics.md) are read at scrape time from
plain counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.config import ApiConfig

log = structlog.get_logger("engine.http")

CLIENT_GONE = 499  # nginx's "client closed request": nothing was sent back
COUNTED_FROM_START = (200, 400, 401, 404, 408, CLIENT_GONE, 500, 503)  # at 0 until seen
LISTEN_BACKLOG = 128
SETTLING_SECONDS = 0.05  # a connection this new is left to send its request
_REFUSAL_BODY = json.dumps({"error": "too many connections: try again"}).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n\r\n".encode()
    + _REFUSAL_BODY
)


def client_went_away(request: web.BaseRequest, exc: BaseException) -> bool:
    """Whether ``exc``, raised while reading or answering ``request``, means its client
    is gone (it closed the connection, or the server closed it: evicted at the cap):
    aiohttp raises ``ConnectionResetError``, or ``RuntimeError`` for a read begun after."""
    return isinstance(exc, ConnectionError) or request.transport is None


class _Refusal(asyncio.Protocol):
    """A connection over the cap: one 503 and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSAL)
        transport.close()


class ConnectionCap:
    """The listening socket's protocol factory: hands each new connection to aiohttp's
    ``server`` after making room for it (see the module docstring)."""

    def __init__(
        self, server: web.Server, limit: int, settling_seconds: float = SETTLING_SECONDS
    ) -> None:
        self._server = server
        self.limit = limit
        self.settling_seconds = settling_seconds
        self.answering: set[web.RequestHandler] = set()  # a whole request being answered
        self._opened: dict[web.RequestHandler, float] = {}  # monotonic time made
        # Handed out in this pass of the event loop: each connects in the next pass, right
        # after this list is cleared (both are call_soon callbacks, run in order).
        self._connecting: list[web.RequestHandler] = []
        self.shed: Counter[str] = Counter({"evicted": 0, "refused": 0})

    def open_connections(self) -> list[web.RequestHandler]:
        """Connected and not closed, longest-open first."""
        return [h for h in self._server.connections if h.transport is not None]

    def __call__(self) -> asyncio.BaseProtocol:
        now = time.monotonic()
        connected = self.open_connections()
        excess = len(connected) + len(self._connecting) + 1 - self.limit
        if excess > 0:
            waiting = [
                h
                for h in connected
                if h not in self.answering and now - self._opened.get(h, 0) >= self.settling_seconds
            ][:excess]
            for handler in waiting:
                handler.force_close()
            self.shed["evicted"] += len(waiting)
            if len(waiting) < excess:
                self.shed["refused"] += 1
                log.debug("http.connection_refused", open=len(connected), limit=self.limit)
                return _Refusal()
        handler = self._server()
        if not self._connecting:
            asyncio.get_running_loop().call_soon(self._connecting.clear)
        self._connecting.append(handler)
        self._opened[handler] = now
        if len(self._opened) > 2 * (self.limit + LISTEN_BACKLOG):
            live = {*self._server.connections, *self._connecting}
            self._opened = {h: t for h, t in self._opened.items() if h in live}
        return handler


class HttpServer:
    """``app`` served on ``settings.host:port`` with the limits of ``settings``."""

    def __init__(
        self,
        app: web.Application,
        settings: ApiConfig,
        settling_seconds: float = SETTLING_SECONDS,
    ) -> None:
        self.settings = settings
        self.settling_seconds = settling_seconds
        self.app = app
        app.middlewares.append(self.guard)
        self.responses: Counter[int] = Counter(dict.fromkeys(COUNTED_FROM_START, 0))
        self.cap: ConnectionCap | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Listen; the port bound (``settings.port`` 0 picks a free one)."""
        s = self.settings
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=s.header_timeout_seconds,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self.cap = ConnectionCap(self._runner.server, s.max_connections, self.settling_seconds)
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self.cap, s.host, s.port, reuse_address=True, backlog=LISTEN_BACKLOG
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections; the runner closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._listener = None

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Body deadline, client-gone and error handling, and the count of each answer."""
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:  # aiohttp's way of answering 404, 405, 413...
            self.responses[exc.status] += 1
            raise
        if response.status == CLIENT_GONE:
            log.debug("http.client_gone", path=request.path, remote=request.remote)
        self.responses[response.status] += 1
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        answering = self.cap.answering if self.cap is not None else set()
        handled = False

        def body_arrived() -> None:  # may run after the handler is done (lingering read)
            if not handled and not deadline.expired():
                deadline.reschedule(None)
                answering.add(protocol)

        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds) as deadline:
                request.content.on_eof(body_arrived)
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                return self._internal_error(request)  # the handler's own timeout: a bug
            return await self._body_too_slow(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            if client_went_away(request, exc):
                return web.Response(status=CLIENT_GONE)
            return self._internal_error(request)
        finally:
            handled = True
            answering.discard(protocol)

    async def _body_too_slow(self, request: web.Request) -> web.Response:
        """408, sent now, and the connection closed: no lingering read of the slow body."""
        log.debug("http.body_timeout", path=request.path, remote=request.remote)
        response = web.json_response(
            {"error": f"body not received within {self.settings.body_timeout_seconds} s"},
            status=408,
        )
        response.force_close()
        with contextlib.suppress(ConnectionError):  # the client may be gone by now
            await response.prepare(request)
            await response.write_eof()
        request.protocol.force_close()
        return response

    @staticmethod
    def _internal_error(request: web.Request) -> web.Response:
        log.exception("http.internal_error", path=request.path, method=request.method)
        return web.json_response({"error": "internal error (logged)"}, status=500)

    def collector(self) -> Collector:
        return _HttpCollector(self)


class _HttpCollector(Collector):
    def __init__(self, server: HttpServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        requests = CounterMetricFamily(
            "trade_engine_http_requests",
            "HTTP requests answered, by status code (499: the client went away first).",
            labels=["code"],
        )
        for code, count in sorted(server.responses.items()):
            requests.add_metric([str(code)], count)
        yield requests
        cap = server.cap
        yield GaugeMetricFamily(
            "trade_engine_http_connections",
            "HTTP connections open.",
            value=len(cap.open_connections()) if cap is not None else 0,
        )
        shed = CounterMetricFamily(
            "trade_engine_http_connections_shed",
            "Connections closed at api.max_connections: evicted to make room, or refused.",
            labels=["reason"],
        )
        for reason, count in sorted((cap.shed if cap is not None else {}).items()):
            shed.add_metric([reason], count)
        yield shed
