"""The daemon's HTTP server: liveness, readiness, status, metrics and admin.

``GET /health`` answers 200 while the event loop is turning (liveness);
``GET /ready`` answers 200 only when every component is RUNNING, else 503 with the
ones that are not; ``GET /status`` is what the engine is doing (components, risk,
portfolio, strategies' model and config versions); ``GET /metrics`` is the
Prometheus text of the app's registry. ``POST /admin/halt``, ``/admin/resume``,
``/admin/reload`` and ``/admin/models/{model}/promote|rollback|retrain`` need the
bearer token (see :mod:`engine.admin`), and so does ``/status`` when ``api.host`` is
not a loopback address. Every JSON answer passes the one secret redactor
(:mod:`engine.redaction`): a halt reason or a component's status holding a secret
shows ``[REDACTED]``. Components add their own routes by offering
``http_routes() -> list[web.RouteDef]`` (collected by the engine at construction).
Connection limits, timeouts and the request counts are :mod:`engine.http_server`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiohttp import web

from engine.admin import AdminControls, BearerTokenGuard, is_loopback
from engine.component import Component, ComponentContext, ComponentHealth, ComponentState
from engine.config import ApiConfig
from engine.http_server import HttpServer
from engine.metrics import METRICS_CONTENT_TYPE, EngineMetrics

log = structlog.get_logger("engine.api")

DEFAULT_HALT_REASON = "operator (admin API)"
MAX_REASON_LENGTH = 200
MODEL_ACTIONS = ("promote", "rollback", "retrain")


class HttpApi(Component):
    """Serves the engine's HTTP endpoints on ``settings.host:port`` (port 0: a free one)."""

    def __init__(
        self,
        name: str,
        settings: ApiConfig,
        context: ComponentContext,
        *,
        metrics: EngineMetrics,
        health: Callable[[], list[ComponentHealth]],
        depends_on: tuple[str, ...] = (),
        routes: Iterable[web.RouteDef] = (),
        status: Callable[[], dict[str, Any]] | None = None,
        admin: AdminControls | None = None,
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.host = settings.host
        self.port: int | None = None
        self._metrics = metrics
        self._health = health
        self._status = status
        self._admin = admin
        self._guard = BearerTokenGuard(context.secrets.admin_token)
        self._status_needs_token = not is_loopback(settings.host)
        self._redactor = context.secrets.redactor()
        self._started_monotonic = time.monotonic()
        self._app = web.Application()
        self._server = HttpServer(self._app, settings)
        self._app.router.add_routes(
            [
                web.get("/health", self._get_health),
                web.get("/ready", self._get_ready),
                web.get("/status", self._get_status),
                web.get("/metrics", self._get_metrics),
                web.post("/admin/halt", self._post_halt),
                web.post("/admin/resume", self._post_resume),
                web.post("/admin/reload", self._post_reload),
                web.post("/admin/models/{model}/{action}", self._post_model_action),
                *routes,
            ]
        )

    async def on_start(self) -> None:
        self.port = await self._server.start()
        self.register_collector(self._server.collector())
        s = self.settings
        self.log.info(
            "api.listening",
            host=self.host,
            port=self.port,
            status_needs_token=self._status_needs_token,
            max_connections=s.max_connections,
        )

    async def on_stop(self) -> None:
        await self._server.stop()

    def _json(self, body: Any, status: int = 200) -> web.Response:
        """A JSON answer, every string in it redacted (odd values as redacted text)."""
        scrub = self._redactor.scrub
        text = json.dumps(self._redactor.scrub_value(body), default=lambda v: scrub(str(v)))
        return web.json_response(text=text, status=status)

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
        return self._json(body, status=503 if not_running else 200)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    async def _get_status(self, request: web.Request) -> web.Response:
        if self._status_needs_token and (refusal := self._guard.refusal(request)) is not None:
            return refusal
        if self._status is None:
            return web.json_response({"error": "no status in this server"}, status=404)
        return self._json(self._status())

    # -- admin ---------------------------------------------------------------------------

    def _admin_refusal(self, request: web.Request) -> web.Response | None:
        refusal = self._guard.refusal(request)
        if refusal is None and self._admin is None:
            return web.json_response({"error": "no admin controls in this server"}, status=404)
        return refusal

    async def _post_halt(self, request: web.Request) -> web.Response:
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        reason = await _halt_reason(request)
        if isinstance(reason, web.Response):
            return reason
        assert self._admin is not None
        halted = self._admin.halt(reason)
        if not halted:
            return web.json_response({"error": "no risk manager in this engine"}, status=404)
        log.warning("admin.halt", reason=reason, remote=request.remote)
        return self._json({"risk": halted})

    async def _post_resume(self, request: web.Request) -> web.Response:
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self._admin is not None
        resumed = self._admin.resume()
        if not resumed:
            return web.json_response({"error": "no risk manager in this engine"}, status=404)
        refused = [state["name"] for state in resumed if not state["resumed"]]
        log.warning("admin.resume", remote=request.remote, refused=refused)
        if refused:  # a critical subscriber (the journal) still fails: nothing changed
            return self._json(
                {
                    "error": "resume refused: a critical component still fails; "
                    "see the reason, fix it, then resume again",
                    "risk": resumed,
                },
                status=409,
            )
        return self._json({"risk": resumed})

    async def _post_reload(self, request: web.Request) -> web.Response:
        """200 with what was applied, 422 if any file was rejected (with its field paths)."""
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self._admin is not None
        log.info("admin.reload", remote=request.remote)
        reports = await self._admin.reload_configs("admin")
        if not reports:
            return web.json_response(
                {"error": "no strategy config component in this engine"}, status=404
            )
        ok = all(report["ok"] for report in reports)
        return self._json({"ok": ok, "reloads": reports}, status=200 if ok else 422)

    async def _post_model_action(self, request: web.Request) -> web.Response:
        """Promote (``{"version": ...}`` or the challenger), roll back or retrain a model:
        200 with the supervisor's status, 404 for no such model or action, 409 when the
        action cannot be taken (nothing to roll back to, no challenger)."""
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self._admin is not None
        model, action = request.match_info["model"], request.match_info["action"]
        if action not in MODEL_ACTIONS:
            return self._json(
                {"error": f"no action {action!r}: use {', '.join(MODEL_ACTIONS)}"}, 404
            )
        version = None
        if action == "promote" and request.can_read_body:
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                return self._json({"error": "invalid JSON body"}, 400)
            version = body.get("version") if isinstance(body, dict) else None
            if version is not None and not isinstance(version, str):
                return self._json({"error": "version: must be a string"}, 400)
        log.warning(
            "admin.model_action", model=model, action=action, version=version, remote=request.remote
        )
        try:
            result = await self._admin.operate_model(model, action, version)
        except LookupError as exc:
            return self._json({"error": str(exc).strip("'\"")}, 409)
        if result is None:
            return self._json({"error": f"no retrain supervisor operates model {model!r}"}, 404)
        return self._json({"model": model, "action": action, "supervisor": result})


async def _halt_reason(request: web.Request) -> str | web.Response:
    """The reason of a halt: ``{"reason": "..."}`` or an empty body; 400 otherwise."""
    if not request.can_read_body:
        return DEFAULT_HALT_REASON
    usage = 'the body must be empty or JSON {"reason": "..."}'
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": f"invalid JSON: {usage}"}, status=400)
    if not isinstance(body, dict) or set(body) - {"reason"}:
        return web.json_response({"error": usage}, status=400)
    reason = body.get("reason", DEFAULT_HALT_REASON)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        return web.json_response(
            {"error": f"reason: must be a non-empty string of at most {MAX_REASON_LENGTH} chars"},
            status=400,
        )
    return reason
