"""The lifecycle every component follows, and starting/stopping a graph of them.

States: READY → RUNNING → STOPPED, with DEGRADED (still running, impaired: e.g. a
feed reconnecting) and FAULTED (failed, not doing its job) carrying a reason. A
component leaves FAULTED by stopping, or back to RUNNING by :meth:`Component.fault_cleared`
when what failed works again (a critical bus subscription's handler succeeding). Every
transition is published as a :class:`~engine.events.ComponentStateChanged` event.
:class:`ComponentGraph` starts components in dependency order and stops them in
reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from engine.bus import EventBus, Subscription
from engine.clock import Clock
from engine.events import ComponentStateChanged, Event
from engine.market_view import BusMarketView

if TYPE_CHECKING:
    from engine.config import Secrets  # engine.config imports this module

E = TypeVar("E", bound=Event)
C = TypeVar("C", bound="Component")

log = structlog.get_logger("engine.component")


class ComponentState(StrEnum):
    READY = "READY"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAULTED = "FAULTED"


S = ComponentState
_ALLOWED: dict[ComponentState, frozenset[ComponentState]] = {
    S.READY: frozenset({S.STARTING, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.FAULTED}),
    S.RUNNING: frozenset({S.DEGRADED, S.FAULTED, S.STOPPING}),
    S.DEGRADED: frozenset({S.DEGRADED, S.RUNNING, S.FAULTED, S.STOPPING}),  # new reason
    S.FAULTED: frozenset({S.STOPPING, S.RUNNING}),  # RUNNING: fault_cleared()
    S.STOPPING: frozenset({S.STOPPED, S.FAULTED}),
    S.STOPPED: frozenset(),
}


class InvalidStateTransitionError(RuntimeError):
    """A component was asked to move to a state it cannot reach from where it is."""


class ComponentHealth(NamedTuple):
    name: str
    state: ComponentState
    reason: str
    since_ns: int


class ComponentLookup:
    """The components of one engine by name, typed.

    For the few components that must call another directly rather than through the
    bus (risk reads its portfolio; an executor waits on the local chain and reads the
    journal; see docs/architecture.md). Every component adds itself when constructed.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Component] = {}

    def add(self, component: Component) -> None:
        self._by_name[component.name] = component

    def find(self, kind: type[C], name: str) -> C | None:
        """The component called ``name`` if it is a ``kind``, else None."""
        found = self._by_name.get(name)
        return found if isinstance(found, kind) else None

    def of_type(self, kind: type[C]) -> list[C]:
        return [c for c in self._by_name.values() if isinstance(c, kind)]


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What every component may use, handed over at construction by the engine."""

    bus: EventBus
    clock: Clock
    metrics_registry: CollectorRegistry
    secrets: Secrets
    market_view: BusMarketView = None  # type: ignore[assignment]  # None: one on this bus
    components: ComponentLookup = field(default_factory=ComponentLookup)

    def __post_init__(self) -> None:
        if self.market_view is None:
            object.__setattr__(self, "market_view", BusMarketView(self.bus))


class Component:
    """Base for everything the engine runs; subclasses override ``on_start``/``on_stop``.

    Built as ``Class(name, settings, context, depends_on)``: ``settings`` is the
    component type's validated ``Config`` model, ``context`` the engine's shared handles.
    """

    # True for components that act on the outside world in real time (a chain): they
    # cannot run under a simulated clock that races through history.
    needs_wall_clock: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        settings: Any,
        context: ComponentContext,
        depends_on: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        self.context = context
        self.bus = context.bus
        self.clock = context.clock
        self.depends_on = tuple(depends_on)
        self.log = log.bind(component=name)
        self._state = ComponentState.READY
        self._reason = ""
        self._since_ns = self.clock.timestamp_ns()
        self._subscriptions: list[Subscription] = []
        self._collectors: list[Collector] = []
        context.components.add(self)

    @property
    def state(self) -> ComponentState:
        return self._state

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.name, self._state, self._reason, self._since_ns)

    async def on_start(self) -> None:
        """Acquire resources and subscribe; raising here faults the component."""

    async def on_stop(self) -> None:
        """Release resources; must be safe after a failed or partial start."""

    async def on_all_started(self) -> None:
        """Called once every component of the graph is RUNNING.

        Sources (market data) begin publishing here rather than in ``on_start``, so no
        subscriber misses the first events whatever the start order.
        """

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Any], **options: Any
    ) -> Subscription:
        """Subscribe on the bus for this component; undone automatically when it stops.

        With ``critical=True`` the component is FAULTED while the handler fails and
        RUNNING again once it succeeds (see :meth:`EventBus.subscribe`).
        """
        name = options.setdefault("name", f"{self.name}.{getattr(handler, '__name__', 'handler')}")
        if options.get("critical"):
            options.setdefault(
                "on_failure", lambda exc: self.fault(f"{name} failed: {type(exc).__name__}: {exc}")
            )
            options.setdefault("on_recovery", self.fault_cleared)
        sub = self.bus.subscribe(event_type, handler, **options)
        self._subscriptions.append(sub)
        return sub

    def owns(self, subscriber: str) -> bool:
        """True if the bus subscription named ``subscriber`` is this component's."""
        return any(sub.name == subscriber for sub in self._subscriptions)

    def _unsubscribe_all(self) -> None:
        for sub in self._subscriptions:
            self.bus.unsubscribe(sub)
        self._subscriptions.clear()

    def register_collector(self, collector: Collector) -> None:
        """Serve ``collector``'s metrics on /metrics; unregistered automatically at stop."""
        self.context.metrics_registry.register(collector)
        self._collectors.append(collector)

    def _unregister_collectors(self) -> None:
        while self._collectors:
            self.context.metrics_registry.unregister(self._collectors.pop())

    async def start(self) -> None:
        self._transition(S.STARTING)
        try:
            await self.on_start()
        except BaseException as exc:  # cancelled too: never left STARTING, so stop() works
            self._transition(S.FAULTED, f"start failed: {type(exc).__name__}: {exc}")
            raise
        self._transition(S.RUNNING)

    async def stop(self) -> None:
        if self._state in (S.STOPPED, S.STOPPING):
            return
        if self._state is S.READY:
            self._transition(S.STOPPED)
            return
        self._transition(S.STOPPING)
        try:
            await self.on_stop()
        except Exception as exc:
            self._transition(S.FAULTED, f"stop failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._unsubscribe_all()
            self._unregister_collectors()
        self._transition(S.STOPPED)

    def degrade(self, reason: str) -> None:
        """Mark the component impaired but still working (e.g. reconnecting)."""
        if self._state is S.DEGRADED and reason == self._reason:
            return
        self._transition(S.DEGRADED, reason)

    def recover(self) -> None:
        if self._state is S.DEGRADED:
            self._transition(S.RUNNING)

    def fault(self, reason: str) -> None:
        """Mark the component failed; FAULTED until stopped or :meth:`fault_cleared`."""
        if self._state is not S.FAULTED:
            self._transition(S.FAULTED, reason)

    def fault_cleared(self) -> None:
        """Back to RUNNING from FAULTED: what failed works again."""
        if self._state is S.FAULTED:
            self._transition(S.RUNNING)

    def _transition(self, new: ComponentState, reason: str = "") -> None:
        old = self._state
        if new not in _ALLOWED[old]:
            raise InvalidStateTransitionError(f"component {self.name!r}: cannot go {old} → {new}")
        now = self.clock.timestamp_ns()
        self._state, self._reason, self._since_ns = new, reason, now
        level = "warning" if new in (S.DEGRADED, S.FAULTED) else "info"
        getattr(self.log, level)(
            "component.state", previous=str(old), state=str(new), reason=reason
        )
        self.bus.publish_nowait(
            ComponentStateChanged(
                ts_event=now,
                ts_init=now,
                component=self.name,
                previous=str(old),
                state=str(new),
                reason=reason,
            )
        )


class DependencyError(ValueError):
    """The component graph names a missing dependency or has a cycle."""


def start_order(components: Iterable[Component]) -> list[Component]:
    """Components sorted so each comes after what it depends on (stable otherwise)."""
    by_name: dict[str, Component] = {}
    for comp in components:
        if comp.name in by_name:
            raise DependencyError(f"two components are named {comp.name!r}")
        by_name[comp.name] = comp
    for comp in by_name.values():
        for dep in comp.depends_on:
            if dep not in by_name:
                raise DependencyError(f"component {comp.name!r} depends on unknown {dep!r}")

    ordered: list[Component] = []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(comp: Component) -> None:
        if comp.name in done:
            return
        if comp.name in visiting:
            cycle = [*visiting[visiting.index(comp.name) :], comp.name]
            raise DependencyError("dependency cycle: " + " → ".join(cycle))
        visiting.append(comp.name)
        for dep in comp.depends_on:
            visit(by_name[dep])
        visiting.pop()
        done.add(comp.name)
        ordered.append(comp)

    for comp in by_name.values():
        visit(comp)
    return ordered


class ComponentGraph:
    """Starts components in dependency order and stops them in reverse."""

    def __init__(self, components: Iterable[Component]) -> None:
        self.components = start_order(components)
        self._started: list[Component] = []

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components)

    def get(self, name: str) -> Component:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    async def start(self) -> None:
        """Start all, then tell each that all are running; on failure stop and re-raise."""
        for comp in self.components:
            self._started.append(comp)
            try:
                await comp.start()
            except BaseException:
                log.error("graph.start_failed", component=comp.name)
                await self.stop()
                raise
        for comp in self.components:
            await comp.on_all_started()

    async def stop(self, timeout_per_component: float = 2.0) -> None:
        """Stop started components in reverse order; errors are logged, never raised."""
        while self._started:
            comp = self._started.pop()
            try:
                async with asyncio.timeout(timeout_per_component):
                    await comp.stop()
            except TimeoutError:
                log.error("graph.stop_timeout", component=comp.name, timeout=timeout_per_component)
                comp.fault(f"did not stop within {timeout_per_component}s")
            except Exception as exc:
                log.error("graph.stop_failed", component=comp.name, error=str(exc))

    def all_running(self) -> bool:
        return all(c.state is ComponentState.RUNNING for c in self.components)

    def health(self) -> list[ComponentHealth]:
        return [c.health() for c in self.components]
