"""Builds the engine from its config and runs it as a daemon.

Start-up: clock, bus and metrics first, then the configured components in dependency
order, the HTTP API last (so /ready is only served once there is something to be
ready). Shutdown on SIGTERM/SIGINT: components stop in reverse order, the bus drains
everything still queued, and the process exits 0, all within
``shutdown_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import signal
import time

import structlog
from aiohttp import web

from engine.api import HttpApi
from engine.bus import EventBus
from engine.clock import Clock, LiveClock, SimulatedClock
from engine.component import Component, ComponentGraph, ComponentHealth
from engine.config import EngineConfig, Secrets
from engine.metrics import EngineMetrics
from engine.registry import ComponentContext, build_component

log = structlog.get_logger("engine.app")

API_COMPONENT = "api"


def component_routes(components: list[Component]) -> list[web.RouteDef]:
    """HTTP routes that components offer through an ``http_routes()`` method."""
    routes: list[web.RouteDef] = []
    for component in components:
        offer = getattr(component, "http_routes", None)
        if callable(offer):
            routes.extend(offer())
    return routes


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
        self.metrics = EngineMetrics(self.bus, self.health)
        self.context = ComponentContext(self.bus, self.clock, self.metrics.registry, secrets)
        components = [build_component(entry, self.context) for entry in config.enabled_components]
        self.api: HttpApi | None = None
        if config.api.enabled:
            self.api = HttpApi(
                API_COMPONENT,
                self.context,
                host=config.api.host,
                port=config.api.port,
                metrics=self.metrics,
                health=self.health,
                depends_on=tuple(c.name for c in components),
                routes=component_routes(components),
            )
            components.append(self.api)
        self.graph = ComponentGraph(components)

    def health(self) -> list[ComponentHealth]:
        """Every component's state; read by /ready and the metrics at request time."""
        return self.graph.health()

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
            await asyncio.wait_for(self.bus.close(), remaining)
        except TimeoutError:
            left = {s.name: s.depth for s in self.bus.subscriptions if s.depth}
            log.error("engine.drain_timeout", undelivered=left)
            return False
        return True


def finite_sources(engine: Engine) -> list[asyncio.Event]:
    """The ``finished`` events of components that end by themselves (replays)."""
    return [
        finished
        for comp in engine.graph
        if isinstance(finished := getattr(comp, "finished", None), asyncio.Event)
    ]


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
    log.info("engine.starting", name=config.name, components=[c.name for c in engine.graph])
    try:
        await engine.start()
    except Exception as exc:
        log.error("engine.start_failed", error=f"{type(exc).__name__}: {exc}")
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
    if sources and not stop_requested.is_set():
        log.info("engine.sources_finished", published=engine.bus.sequence)
    started = time.monotonic()
    clean = await engine.stop()
    log.info("engine.stopped", clean=clean, seconds=round(time.monotonic() - started, 3))
    return 0 if clean else 1
