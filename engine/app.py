"""Builds the engine from its config and runs it as a daemon.

Start-up: clock, bus and metrics first, then the configured components in dependency
order, the HTTP API last (so /ready is only served once there is something to be
ready). Shutdown on SIGTERM/SIGINT: components stop in reverse order, the bus drains
everything still queued, and the process exits 0, all within
``shutdown_timeout_seconds``. SIGHUP reloads the strategy configs, as
``POST /admin/reload`` does.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import structlog
from aiohttp import web

from engine.api import HttpApi
from engine.bus import EventBus
from engine.capabilities import (
    FiniteSource,
    Haltable,
    OffersRoutes,
    OperatesModel,
    ReloadsConfigs,
    ReportsStatus,
)
from engine.clock import Clock, LiveClock, SimulatedClock
from engine.component import Component, ComponentContext, ComponentGraph, ComponentHealth
from engine.config import EngineConfig, Secrets
from engine.market_view import BusMarketView
from engine.metrics import EngineMetrics
from engine.registry import build_component

log = structlog.get_logger("engine.app")

API_COMPONENT = "api"


def component_routes(components: list[Component]) -> list[web.RouteDef]:
    """HTTP routes that components offer (:class:`~engine.capabilities.OffersRoutes`)."""
    return [route for c in components if isinstance(c, OffersRoutes) for route in c.http_routes()]


class Engine:
    """One engine instance: its clock, bus, metrics and component graph."""

    def __init__(self, config: EngineConfig, secrets: Secrets, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or (SimulatedClock() if config.clock == "simulated" else LiveClock())
        self.bus = EventBus(
            default_capacity=config.bus.queue_capacity,
            default_backpressure=config.bus.backpressure,
            latency_sample_every=config.bus.latency_sample_every,
        )
        market = BusMarketView(self.bus)
        self.metrics = EngineMetrics(self.bus, self.health, market)
        self.context = ComponentContext(
            self.bus, self.clock, self.metrics.registry, secrets, market_view=market
        )
        self._started_monotonic = time.monotonic()
        components = [build_component(entry, self.context) for entry in config.enabled_components]
        self.api: HttpApi | None = None
        if config.api.enabled:
            self.api = HttpApi(
                API_COMPONENT,
                config.api,
                self.context,
                metrics=self.metrics,
                health=self.health,
                depends_on=tuple(c.name for c in components),
                routes=component_routes(components),
                status=self.status,
                admin=self,
            )
            components.append(self.api)
        self.graph = ComponentGraph(components)

    def health(self) -> list[ComponentHealth]:
        """Every component's state; read by /ready and the metrics at request time."""
        return self.graph.health()

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` shows; components add to it (:class:`ReportsStatus`)."""
        components = []
        for comp in self.graph:
            health = comp.health()
            entry: dict[str, Any] = {
                "name": health.name,
                "state": str(health.state),
                "reason": health.reason,
            }
            if isinstance(comp, ReportsStatus):
                try:
                    entry["status"] = comp.status()
                except Exception as exc:  # a status page must not fail with one component
                    log.warning("engine.status_failed", component=comp.name, error=repr(exc))
                    entry["status"] = {"error": f"status unavailable: {type(exc).__name__}"}
            components.append(entry)
        return {
            "engine": self.config.name,
            "uptime_seconds": round(time.monotonic() - self._started_monotonic, 3),
            "bus_sequence": self.bus.sequence,
            "components": components,
        }

    def _risk_managers(self) -> list[Haltable]:
        return [c for c in self.graph if isinstance(c, Haltable)]

    def halt(self, reason: str) -> list[dict[str, Any]]:
        """Halt every risk manager."""
        for risk in self._risk_managers():
            risk.halt(reason)
        return [self._risk_state(risk) for risk in self._risk_managers()]

    def resume(self) -> list[dict[str, Any]]:
        """Resume every risk manager; each state says ``resumed: false`` if it refused."""
        states = []
        for risk in self._risk_managers():
            resumed = risk.resume()
            states.append({**self._risk_state(risk), "resumed": resumed})
        return states

    @staticmethod
    def _risk_state(risk: Haltable) -> dict[str, Any]:
        return {"name": risk.name, "state": str(risk.risk_state), "reason": risk.state_reason}

    async def reload_configs(self, trigger: str) -> list[dict[str, Any]]:
        """Reload every component that has configs to reload; one report each."""
        reports = []
        for comp in self.graph:
            if isinstance(comp, ReloadsConfigs):
                reports.append({"component": comp.name, **await comp.reload_configs(trigger)})
        return reports

    async def operate_model(
        self, model: str, action: str, version: str | None
    ) -> dict[str, Any] | None:
        for comp in self.graph:
            if isinstance(comp, OperatesModel) and comp.model_name == model:
                if action == "promote":
                    return await comp.operator_promote(version)
                if action == "rollback":
                    return await comp.operator_rollback()
                return await comp.operator_retrain()
        return None

    async def start(self) -> None:
        self.bus.start()
        await self.graph.start()

    async def stop(self) -> bool:
        """Stop components, drain and close the bus; False if the time budget ran out."""
        deadline = time.monotonic() + self.config.shutdown_timeout_seconds
        components = max(len(self.graph.components), 1)
        per_component = self.config.shutdown_timeout_seconds / (2 * components)
        await self.graph.stop(timeout_per_component=per_component)
        remaining = max(deadline - time.monotonic(), 0.01)
        try:
            async with asyncio.timeout(remaining):
                await self.bus.close()
        except TimeoutError:
            left = {s.name: s.depth for s in self.bus.subscriptions if s.depth}
            log.error("engine.drain_timeout", undelivered=left)
            return False
        return True


def finite_sources(engine: Engine) -> list[asyncio.Event]:
    """The ``finished`` events of components that end by themselves (replays)."""
    return [comp.finished for comp in engine.graph if isinstance(comp, FiniteSource)]


async def run_daemon(
    config: EngineConfig, secrets: Secrets, *, exit_when_sources_finish: bool = False
) -> int:
    """Run until SIGTERM or SIGINT (or, for a replay, until every source has finished)."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("engine.shutdown_in_progress", signal=signal.Signals(signum).name)
            return
        log.info("engine.stop_requested", signal=signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)

    engine = Engine(config, secrets)
    reloads: set[asyncio.Task[None]] = set()

    def request_reload() -> None:
        task = asyncio.ensure_future(reload_on_sighup(engine))
        reloads.add(task)  # a reference until done, or the task may be collected
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, request_reload)
    log.info("engine.starting", name=config.name, components=[c.name for c in engine.graph])
    starting = asyncio.ensure_future(engine.start())
    stopping = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Stopped during start-up (a first model still training, say): give the start up.
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        log.info("engine.start_cancelled")
        clean = await engine.stop()
        log.info("engine.stopped", clean=clean)
        return 0 if clean else 1
    stopping.cancel()
    if (failure := starting.exception()) is not None:
        log.error("engine.start_failed", error=f"{type(failure).__name__}: {failure}")
        await engine.stop()
        return 1
    log.info("engine.running", components=len(engine.graph.components))
    waits = [asyncio.ensure_future(stop_requested.wait())]
    sources = finite_sources(engine) if exit_when_sources_finish else []
    if sources:
        waits.append(asyncio.ensure_future(asyncio.gather(*(f.wait() for f in sources))))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waits:
        waiter.cancel()
    loop.remove_signal_handler(signal.SIGHUP)
    for task in list(reloads):
        task.cancel()
    if sources and not stop_requested.is_set():
        log.info("engine.sources_finished", published=engine.bus.sequence)
    started = time.monotonic()
    clean = await engine.stop()
    log.info("engine.stopped", clean=clean, seconds=round(time.monotonic() - started, 3))
    return 0 if clean else 1


async def reload_on_sighup(engine: Engine) -> None:
    """What SIGHUP does: reload the strategy configs and log what happened."""
    log.info("engine.reload_requested", signal="SIGHUP")
    try:
        reports = await engine.reload_configs("sighup")
    except Exception as exc:
        log.error("engine.reload_failed", signal="SIGHUP", error=f"{type(exc).__name__}: {exc}")
        return
    if not reports:
        log.warning("engine.reload_nothing", detail="no component has configs to reload")
