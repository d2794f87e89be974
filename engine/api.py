"""The daemon's HTTP server: liveness, readiness and Prometheus metrics.

``GET /health`` answers 200 while the event loop is turning (liveness);
``GET /ready`` answers 200 only when every component is RUNNING, else 503 with the
ones that are not; ``GET /metrics`` is the Prometheus text of the app's registry.
Components add their own routes by offering ``http_routes() -> list[web.RouteDef]``
(collected by the engine at construction).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aiohttp import web

from engine.component import Component, ComponentHealth, ComponentState
from engine.metrics import METRICS_CONTENT_TYPE, EngineMetrics
from engine.registry import ComponentContext


class HttpApi(Component):
    """Serves the engine's HTTP endpoints on ``host:port`` (port 0: a free one)."""

    def __init__(
        self,
        name: str,
        context: ComponentContext,
        *,
        host: str,
        port: int,
        metrics: EngineMetrics,
        health: Callable[[], list[ComponentHealth]],
        depends_on: tuple[str, ...] = (),
        routes: Iterable[web.RouteDef] = (),
    ) -> None:
        super().__init__(name, context.bus, context.clock, depends_on)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._metrics = metrics
        self._health = health
        self._started_monotonic = time.monotonic()
        self._app = web.Application()
        self._app.router.add_routes(
            [
                web.get("/health", self._get_health),
                web.get("/ready", self._get_ready),
                web.get("/metrics", self._get_metrics),
                *routes,
            ]
        )
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        self.log.info("api.listening", host=self.host, port=self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_health(self, request: web.Request) -> web.Response:
        uptime = round(time.monotonic() - self._started_monotonic, 3)
        return web.json_response({"status": "alive", "uptime_seconds": uptime})

    async def _get_ready(self, request: web.Request) -> web.Response:
        components = self._health()
        not_running = [c for c in components if c.state is not ComponentState.RUNNING]
        body = {
            "ready": not not_running,
            "components": [
                {"name": c.name, "state": str(c.state), "reason": c.reason} for c in components
            ],
        }
        return web.json_response(body, status=503 if not_running else 200)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response
