"""In-process typed publish/subscribe on one asyncio event loop.

Delivery rules, which the tests pin down:

* Subscribers register for an event class; subscribing to :class:`~engine.events.Event`
  receives everything (the journal and metrics do this). Handlers for one event run in
  subscription order.
* Every subscriber sees events in publish (sequence) order. A sync handler that
  publishes does not recurse: the new event is queued and delivered once the current
  event has reached every subscriber (run-to-completion).
* Sync handlers run inline. Async handlers each get a consumer task and a FIFO inbox.
* A handler that raises is logged and counted; delivery to the others goes on, unless
  the subscription is *critical* (declared at :meth:`EventBus.subscribe`: a subscriber
  the others' guarantees depend on, such as the journal). An event a critical handler
  failed on is *withheld*: it goes to no later subscriber, sync or async, so nothing acts
  on it. The first failure of a critical subscription calls its ``on_failure`` and
  publishes a :class:`~engine.events.SubscriberFailed` notice; its next successful call
  calls ``on_recovery`` and publishes :class:`~engine.events.SubscriberRecovered`.
  Notices are never withheld (a wildcard critical subscriber failing on its own notice
  would otherwise hide it), and failures after the first are logged at debug level
  only: counted, not repeated for every event. Critical handlers must be sync, since an
  async one runs after the others have the event.
* Backpressure is chosen per async subscriber. ``BLOCK``: when its queue is full, a
  source awaiting :meth:`EventBus.publish` waits until the consumer catches up (bus
  consumers republishing are never blocked, so handlers cannot deadlock each other;
  sync :meth:`EventBus.publish_nowait` never waits). ``DROP_OLDEST``: the oldest queued
  event is discarded and counted.
* :meth:`EventBus.drain` returns once everything published so far, and everything
  published by handlers in response, has been handled.
"""

from __future__ import annotations

import asyncio
import inspect
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from msgspec.structs import force_setattr

from engine.events import SUBSCRIBER_NOTICES, Event, SubscriberFailed, SubscriberRecovered

if TYPE_CHECKING:  # a type hint only: the bus itself does not use prometheus
    from prometheus_client.core import HistogramMetricFamily

E = TypeVar("E", bound=Event)
SyncHandler = Callable[[Any], None]
AsyncHandler = Callable[[Any], Awaitable[None]]
OnFailure = Callable[[Exception], None]
OnRecovery = Callable[[], None]

log = structlog.get_logger("engine.bus")

# Upper bounds of the handler-latency histogram, in seconds (Prometheus `le`).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    1e-6,
    5e-6,
    1e-5,
    5e-5,
    1e-4,
    5e-4,
    1e-3,
    5e-3,
    1e-2,
    5e-2,
    0.1,
    0.5,
    1.0,
    5.0,
)
_BUCKET_BOUNDS_NS: tuple[int, ...] = tuple(int(b * 1e9) for b in LATENCY_BUCKETS_S)
_BUCKET_LABELS: tuple[str, ...] = (*(str(b) for b in LATENCY_BUCKETS_S), "+Inf")
_WITHHELD_REMEMBERED = 256  # sequence numbers kept for :meth:`EventBus.was_withheld`


def _stamp_of(event: Event) -> dict[str, Any]:
    """Times and correlation id for a notice about ``event`` (the bus has no clock)."""
    return {
        "ts_event": event.ts_event,
        "ts_init": event.ts_init,
        "correlation_id": event.correlation_id,
    }


class Backpressure(StrEnum):
    """What an async subscriber's full queue does to the publisher."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class BusClosedError(RuntimeError):
    """Raised when publishing on a bus that has been closed."""


class LatencyHistogram:
    """Handler latency counts per bucket; cheap to update, read at scrape time."""

    __slots__ = ("bucket_counts", "count", "sum_ns")

    def __init__(self) -> None:
        self.bucket_counts = [0] * (len(_BUCKET_BOUNDS_NS) + 1)
        self.count = 0
        self.sum_ns = 0

    def observe_ns(self, elapsed_ns: int) -> None:
        self.bucket_counts[bisect_left(_BUCKET_BOUNDS_NS, elapsed_ns)] += 1
        self.count += 1
        self.sum_ns += elapsed_ns

    def cumulative(self) -> list[int]:
        """Counts per bucket as Prometheus wants them: cumulative, ending with +Inf."""
        running, out = 0, []
        for n in self.bucket_counts:
            running += n
            out.append(running)
        return out

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """Add this histogram, in seconds, as one sample set of ``family``."""
        buckets = list(zip(_BUCKET_LABELS, self.cumulative(), strict=True))
        family.add_metric(labels, buckets, sum_value=self.sum_ns / 1e9)


class Subscription:
    """One handler's registration, with its delivery statistics.

    An async subscription has an ``inbox`` (a deque, cheaper than ``asyncio.Queue``)
    drained by its own consumer task; a sync one has ``inbox = None``. A critical one
    (sync only) is ``failing`` from a raise until its next successful call, and counts
    the events it ``withheld`` from the subscribers after it.
    """

    __slots__ = (
        "_closing",
        "_idle",
        "_room",
        "_task",
        "_wakeup",
        "backpressure",
        "capacity",
        "critical",
        "delivered",
        "dropped",
        "errors",
        "event_type",
        "failing",
        "handler",
        "inbox",
        "latency",
        "name",
        "on_failure",
        "on_recovery",
        "withheld",
    )

    def __init__(
        self,
        name: str,
        event_type: type[Event],
        handler: SyncHandler | AsyncHandler,
        *,
        is_async: bool,
        capacity: int,
        backpressure: Backpressure,
        critical: bool = False,
        on_failure: OnFailure | None = None,
        on_recovery: OnRecovery | None = None,
    ) -> None:
        self.name = name
        self.event_type = event_type
        self.handler = handler
        self.capacity = capacity
        self.backpressure = backpressure
        self.critical = critical
        self.on_failure = on_failure
        self.on_recovery = on_recovery
        self.failing = False
        self.withheld = 0
        self.inbox: deque[Event] | None = deque() if is_async else None
        self.delivered = 0
        self.dropped = 0
        self.errors: dict[str, int] = {}
        self.latency = LatencyHistogram()
        self._room = asyncio.Event()  # set while a BLOCK inbox has room
        self._room.set()
        self._idle = asyncio.Event()  # set while the inbox is empty and nothing is handled
        self._idle.set()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def is_async(self) -> bool:
        return self.inbox is not None

    @property
    def depth(self) -> int:
        return len(self.inbox) if self.inbox is not None else 0

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "critical" if self.critical else "sync"
        return f"Subscription({self.name!r}, {self.event_type.__name__}, {kind})"


class _Route:
    """The subscribers of one concrete event type, split by how they are called."""

    __slots__ = ("published", "queued", "sync")

    def __init__(self, sync: tuple[Subscription, ...], queued: tuple[Subscription, ...]) -> None:
        self.sync = sync
        self.queued = queued
        self.published = 0


class EventBus:
    """Typed pub/sub; see the module docstring for the delivery rules.

    ``latency_sample_every``: handler latency is measured on one event in N (by
    sequence number; 0 turns it off), which keeps the clock reads off most calls.
    """

    def __init__(
        self,
        *,
        default_capacity: int = 1024,
        default_backpressure: Backpressure = Backpressure.BLOCK,
        latency_sample_every: int = 8,
    ) -> None:
        if default_capacity < 1:
            raise ValueError(f"default_capacity must be >= 1, got {default_capacity}")
        if latency_sample_every < 0:
            raise ValueError(f"latency_sample_every must be >= 0, got {latency_sample_every}")
        self.default_capacity = default_capacity
        self.default_backpressure = Backpressure(default_backpressure)
        self.latency_sample_every = latency_sample_every
        self._published_before_reroute: dict[type[Event], int] = {}
        self._subscriptions: list[Subscription] = []
        self._routes: dict[type[Event], _Route] = {}
        self._seq = 0
        self._pending: deque[Event] = deque()
        self._dispatching = False
        self._congested: set[Subscription] = set()
        self._consumers: dict[asyncio.Task[None], Subscription] = {}
        self._withheld: deque[int] = deque(maxlen=_WITHHELD_REMEMBERED)
        self._failing = 0  # critical subscriptions failing now
        self._closed = False

    # -- subscribing -------------------------------------------------------------------

    def subscribe(
        self,
        event_type: type[E],
        handler: Callable[[E], None] | Callable[[E], Awaitable[None]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        backpressure: Backpressure | None = None,
        critical: bool = False,
        on_failure: OnFailure | None = None,
        on_recovery: OnRecovery | None = None,
    ) -> Subscription:
        """Register ``handler`` for ``event_type`` and its subclasses.

        A coroutine function gets its own consumer task and an inbox of ``capacity``
        events; a plain function is called inline by the publisher. ``capacity`` and
        ``backpressure`` default to the bus's. ``critical``: an event this handler
        raises on is withheld from every later subscriber, and its failing and
        recovering are announced (``on_failure(exc)``, ``on_recovery()``, and the
        notice events; see the module docstring).
        """
        if self._closed:
            raise BusClosedError("cannot subscribe: the bus is closed")
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"event_type must be an Event subclass, got {event_type!r}")
        capacity = self.default_capacity if capacity is None else capacity
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        is_async = inspect.iscoroutinefunction(handler)
        if critical and is_async:
            raise ValueError(
                "a critical handler must be sync: its failure has to stop the event "
                "before the other subscribers see it"
            )
        sub = Subscription(
            self._unique_name(name or getattr(handler, "__qualname__", repr(handler))),
            event_type,
            handler,
            is_async=is_async,
            capacity=capacity,
            backpressure=Backpressure(backpressure or self.default_backpressure),
            critical=critical,
            on_failure=on_failure,
            on_recovery=on_recovery,
        )
        self._subscriptions.append(sub)
        self._reroute()
        if sub.is_async:
            self._start_consumer_if_loop_running(sub)
        return sub

    def _unique_name(self, name: str) -> str:
        """Subscriber names label metrics, so two handlers must not share one."""
        taken = {s.name for s in self._subscriptions}
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}#{n}"
        return candidate

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop routing to ``sub``; an async one still handles what is already queued."""
        if sub not in self._subscriptions:
            return
        self._subscriptions.remove(sub)
        self._reroute()
        if sub.failing:
            sub.failing = False
            self._failing -= 1
        self._congested.discard(sub)
        sub._room.set()
        sub._closing = True
        self._wake(sub)

    def _reroute(self) -> None:
        """Forget cached routes (subscriptions changed), keeping their publish counts."""
        kept = self._published_before_reroute
        for event_type, route in self._routes.items():
            kept[event_type] = kept.get(event_type, 0) + route.published
        self._routes.clear()

    @property
    def published(self) -> dict[type[Event], int]:
        """Events published so far, by concrete event type."""
        counts = dict(self._published_before_reroute)
        for event_type, route in self._routes.items():
            counts[event_type] = counts.get(event_type, 0) + route.published
        return counts

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    @property
    def sequence(self) -> int:
        """The sequence number of the last event published."""
        return self._seq

    def start(self) -> None:
        """Start the consumer tasks of async subscribers registered before the loop ran."""
        for sub in self._subscriptions:
            if sub.is_async and sub._task is None:
                self._start_consumer(sub)

    # -- publishing --------------------------------------------------------------------

    def publish_nowait(self, event: Event) -> int:
        """Stamp a sequence number on ``event`` and deliver it; never waits.

        Returns the sequence number. Called from inside a handler, the event is
        delivered right after the event being handled has reached every subscriber.
        """
        if self._closed:
            raise BusClosedError(f"cannot publish {type(event).__name__}: the bus is closed")
        self._seq = seq = self._seq + 1
        force_setattr(event, "seq", seq)
        if self._dispatching:
            self._pending.append(event)
            return seq
        self._dispatching = True
        try:
            self._deliver(event)
            pending = self._pending
            while pending:
                self._deliver(pending.popleft())
        finally:
            self._dispatching = False
        return seq

    async def publish(self, event: Event) -> int:
        """Like :meth:`publish_nowait`, then wait while a ``BLOCK`` subscriber is full."""
        seq = self.publish_nowait(event)
        if self._congested and asyncio.current_task() not in self._consumers:
            while self._congested:
                await next(iter(self._congested))._room.wait()
        return seq

    def _route(self, event_type: type[Event]) -> _Route:
        subs = [sub for sub in self._subscriptions if issubclass(event_type, sub.event_type)]
        route = _Route(
            tuple(s for s in subs if s.inbox is None), tuple(s for s in subs if s.inbox is not None)
        )
        self._routes[event_type] = route
        return route

    def _deliver(self, event: Event) -> None:
        event_type = type(event)
        route = self._routes.get(event_type)
        if route is None:
            route = self._route(event_type)
        route.published += 1
        every = self.latency_sample_every
        timed = bool(every) and not event.seq % every
        if timed or self._failing:
            self._deliver_watched(event, route, timed=timed)
            return
        for sub in route.sync:
            try:
                sub.handler(event)
            except Exception as exc:
                if self._handler_failed(sub, event, exc):
                    sub.delivered += 1
                    return
            sub.delivered += 1
        for sub in route.queued:
            self._enqueue(sub, event)

    def _deliver_watched(self, event: Event, route: _Route, *, timed: bool) -> None:
        """The slower delivery: timing handlers, and, while a critical subscriber is
        failing, noticing when it handles an event again."""
        for sub in route.sync:
            started = perf_counter_ns() if timed else 0
            try:
                sub.handler(event)
            except Exception as exc:
                withheld = self._handler_failed(sub, event, exc)
            else:
                withheld = False
                if sub.failing:
                    self._recovered(sub, event)
            sub.delivered += 1
            if timed:
                sub.latency.observe_ns(perf_counter_ns() - started)
            if withheld:
                return
        for sub in route.queued:
            self._enqueue(sub, event)

    def _handler_failed(self, sub: Subscription, event: Event, exc: Exception) -> bool:
        """Record a sync handler's failure; True if ``event`` is withheld from the rest."""
        if not sub.critical:
            self._record_error(sub, event, exc)
            return False
        first = not sub.failing
        self._record_error(sub, event, exc, quiet=not first)
        if first:
            sub.failing = True
            self._failing += 1
            # Queued before on_failure's own events, so the notice comes first.
            self.publish_nowait(
                SubscriberFailed(
                    **_stamp_of(event),
                    subscriber=sub.name,
                    event_type=type(event).__name__,
                    event_seq=event.seq,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            if sub.on_failure is not None:
                self._call_hook(sub, "on_failure", sub.on_failure, exc)
        if isinstance(event, SUBSCRIBER_NOTICES):
            return False  # never hidden: it is how the others learn of the failure
        sub.withheld += 1
        self._withheld.append(event.seq)
        return True

    def _recovered(self, sub: Subscription, event: Event) -> None:
        sub.failing = False
        self._failing -= 1
        log.warning("bus.subscriber_recovered", subscriber=sub.name, withheld=sub.withheld)
        self.publish_nowait(SubscriberRecovered(**_stamp_of(event), subscriber=sub.name))
        if sub.on_recovery is not None:
            self._call_hook(sub, "on_recovery", sub.on_recovery)

    @staticmethod
    def _call_hook(sub: Subscription, hook: str, call: Callable[..., None], *args: Any) -> None:
        try:
            call(*args)
        except Exception as exc:  # a hook must not break delivery to the others
            log.error("bus.hook_failed", subscriber=sub.name, hook=hook, error=repr(exc))

    def was_withheld(self, seq: int) -> bool:
        """True if the event published as ``seq`` was withheld by a failing critical
        subscriber (recent events only): a publisher that must not go on unless the
        event was recorded, such as an executor about to send, checks it."""
        return seq in self._withheld

    def _enqueue(self, sub: Subscription, event: Event) -> None:
        inbox = sub.inbox
        assert inbox is not None
        if len(inbox) >= sub.capacity and sub.backpressure is Backpressure.DROP_OLDEST:
            inbox.popleft()
            sub.dropped += 1
        inbox.append(event)
        sub._idle.clear()
        if sub._wakeup is not None:
            self._wake(sub)
        if sub.backpressure is Backpressure.BLOCK and len(inbox) >= sub.capacity:
            sub._room.clear()
            self._congested.add(sub)

    @staticmethod
    def _wake(sub: Subscription) -> None:
        waiter, sub._wakeup = sub._wakeup, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _record_error(
        self, sub: Subscription, event: Event, exc: Exception, *, quiet: bool = False
    ) -> None:
        event_type = type(event).__name__
        sub.errors[event_type] = sub.errors.get(event_type, 0) + 1
        (log.debug if quiet else log.error)(
            "bus.handler_failed",
            subscriber=sub.name,
            event_type=event_type,
            seq=event.seq,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )

    # -- async consumers ---------------------------------------------------------------

    def _start_consumer_if_loop_running(self, sub: Subscription) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by start() once the loop runs
        self._start_consumer(sub)

    def _start_consumer(self, sub: Subscription) -> None:
        task = asyncio.get_running_loop().create_task(
            self._consume(sub), name=f"bus-consumer:{sub.name}"
        )
        sub._task = task
        self._consumers[task] = sub
        task.add_done_callback(self._forget_consumer)

    def _forget_consumer(self, task: asyncio.Task[None]) -> None:
        self._consumers.pop(task, None)

    async def _consume(self, sub: Subscription) -> None:
        inbox = sub.inbox
        assert inbox is not None
        handler = sub.handler
        loop = asyncio.get_running_loop()
        while True:
            if not inbox:
                sub._idle.set()
                if sub._closing:
                    return
                sub._wakeup = loop.create_future()
                await sub._wakeup
                continue
            event = inbox.popleft()
            every = self.latency_sample_every
            started = perf_counter_ns() if every and not event.seq % every else 0
            try:
                await handler(event)  # type: ignore[misc]
            except Exception as exc:
                self._record_error(sub, event, exc)
            sub.delivered += 1
            if started:
                sub.latency.observe_ns(perf_counter_ns() - started)
            if not sub._room.is_set() and len(inbox) < sub.capacity:
                self._congested.discard(sub)
                sub._room.set()

    # -- shutdown ----------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every queued event, and every event they cause, has been handled."""
        self.start()
        while True:
            seq_before = self._seq
            for sub in list(self._consumers.values()):
                await sub._idle.wait()
            # Events only enter inboxes by being published: no new sequence number while
            # we waited means every inbox we saw idle is still empty.
            if self._seq == seq_before:
                return

    async def close(self) -> None:
        """Drain, then stop every consumer task; later publishes raise."""
        await self.drain()
        self._closed = True
        tasks = list(self._consumers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
