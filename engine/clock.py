"""Wall-clock and simulated time behind one interface.

Components ask the clock for the time, set timers on it and sleep on it, never on
``time`` or ``asyncio.sleep`` directly, so the same code runs live and in a replay.
Under :class:`SimulatedClock` time moves only when the replay driver advances it
(``advance_to`` or ``sleep_until``); timers due on the way fire in time order, each
seeing the clock at its own scheduled time, so a replay runs as fast as the CPU allows.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

NANOS_PER_SECOND = 1_000_000_000


class TimerFired(NamedTuple):
    """What a timer callback receives: which timer, when it was due, when it ran."""

    name: str
    scheduled_ns: int
    fired_ns: int


TimerCallback = Callable[[TimerFired], None]


class _Timer:
    __slots__ = ("callback", "handle", "interval_ns", "name", "next_ns", "stop_ns")

    def __init__(
        self,
        name: str,
        callback: TimerCallback,
        next_ns: int,
        interval_ns: int | None,
        stop_ns: int | None,
    ) -> None:
        self.name = name
        self.callback = callback
        self.next_ns = next_ns
        self.interval_ns = interval_ns  # None: fires once
        self.stop_ns = stop_ns
        self.handle: asyncio.TimerHandle | None = None

    def advance(self) -> bool:
        """Move to the next due time; False when the timer is finished."""
        if self.interval_ns is None:
            return False
        self.next_ns += self.interval_ns
        return self.stop_ns is None or self.next_ns <= self.stop_ns


class ClockHold:
    """A component's request that simulated time wait for it (see :meth:`Clock.hold`)."""

    def __init__(self, clock: Clock, reason: str) -> None:
        self.clock = clock
        self.reason = reason
        self.released = False

    def release(self) -> None:
        """Let time move again (idempotent)."""
        if not self.released:
            self.released = True
            self.clock._released(self)


class Clock(ABC):
    """Time source shared by every component of one engine."""

    def __init__(self) -> None:
        self._timers: dict[str, _Timer] = {}

    def hold(self, reason: str) -> ClockHold:
        """Ask time to wait while work that is instant in the model of the world runs
        (a retraining decided at a bar: in a replay its result is in force from the next
        bar, however long it takes). Simulated time does not advance until every hold is
        released; the wall clock moves on regardless. Release it in a ``finally``."""
        return ClockHold(self, reason)

    def _released(self, hold: ClockHold) -> None:  # noqa: B027  (the wall clock: nothing)
        """A hold was released."""

    @abstractmethod
    def timestamp_ns(self) -> int:
        """Nanoseconds since the Unix epoch, UTC."""

    def timestamp(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        return self.timestamp_ns() / NANOS_PER_SECOND

    @abstractmethod
    async def sleep_until(self, ts_ns: int) -> None:
        """Return once the clock has reached ``ts_ns`` (at once if it already has)."""

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.timestamp_ns() + int(seconds * NANOS_PER_SECOND))

    def set_timer(
        self,
        name: str,
        interval_ns: int,
        callback: TimerCallback,
        *,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> None:
        """Call ``callback`` every ``interval_ns``, first at ``start_ns + interval_ns``."""
        if interval_ns <= 0:
            raise ValueError(f"timer {name!r}: interval must be > 0 ns, got {interval_ns}")
        start = self.timestamp_ns() if start_ns is None else start_ns
        self._add(_Timer(name, callback, start + interval_ns, interval_ns, stop_ns))

    def set_alert(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        """Call ``callback`` once when the clock reaches ``at_ns``."""
        self._add(_Timer(name, callback, at_ns, None, None))

    def cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.handle is not None:
            timer.handle.cancel()

    def cancel_all_timers(self) -> None:
        for name in list(self._timers):
            self.cancel_timer(name)

    @property
    def timer_names(self) -> list[str]:
        return sorted(self._timers)

    def _add(self, timer: _Timer) -> None:
        if timer.name in self._timers:
            raise ValueError(f"a timer named {timer.name!r} is already set")
        self._timers[timer.name] = timer
        self._schedule(timer)

    @abstractmethod
    def _schedule(self, timer: _Timer) -> None: ...

    def _fire(self, timer: _Timer, now_ns: int) -> None:
        """Run one due timer and schedule its next firing (or forget it)."""
        scheduled = timer.next_ns
        if timer.advance():
            self._schedule(timer)
        else:
            self._timers.pop(timer.name, None)
        timer.callback(TimerFired(timer.name, scheduled, now_ns))


class LiveClock(Clock):
    """The wall clock; timers run on the event loop, aligned to their schedule."""

    def timestamp_ns(self) -> int:
        return time.time_ns()

    async def sleep_until(self, ts_ns: int) -> None:
        delay_ns = ts_ns - time.time_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / NANOS_PER_SECOND)

    def _schedule(self, timer: _Timer) -> None:
        now = time.time_ns()
        if timer.interval_ns is not None and timer.next_ns < now:
            # The loop was late (blocked or suspended): skip the missed firings rather
            # than calling back in a burst.
            missed = (now - timer.next_ns) // timer.interval_ns
            timer.next_ns += missed * timer.interval_ns
        delay = max(0, timer.next_ns - now) / NANOS_PER_SECOND
        loop = asyncio.get_running_loop()
        timer.handle = loop.call_later(delay, self._on_due, timer)

    def _on_due(self, timer: _Timer) -> None:
        if self._timers.get(timer.name) is timer:
            self._fire(timer, time.time_ns())


class SimulatedClock(Clock):
    """Time that moves only when told to; for replays, backtests and tests."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self._now = start_ns
        self._due: list[tuple[int, int, _Timer]] = []
        self._order = itertools.count()
        self._holds: set[ClockHold] = set()
        self._no_holds: asyncio.Event | None = None  # made on first use, inside a loop

    def hold(self, reason: str) -> ClockHold:
        held = ClockHold(self, reason)
        self._holds.add(held)
        return held

    def _released(self, hold: ClockHold) -> None:
        self._holds.discard(hold)
        if not self._holds and self._no_holds is not None:
            self._no_holds.set()

    @property
    def held_by(self) -> list[str]:
        """Reasons of the holds in force."""
        return sorted(h.reason for h in self._holds)

    def timestamp_ns(self) -> int:
        return self._now

    def advance_to(self, ts_ns: int) -> int:
        """Move time forward to ``ts_ns``, firing due timers in order; returns how many."""
        if ts_ns < self._now:
            raise ValueError(f"simulated time cannot go back: now {self._now}, asked {ts_ns}")
        fired = 0
        due = self._due
        while due and due[0][0] <= ts_ns:
            at_ns, _, timer = heapq.heappop(due)
            if self._timers.get(timer.name) is not timer or timer.next_ns != at_ns:
                continue  # cancelled or replaced since it was queued
            self._now = at_ns
            self._fire(timer, at_ns)
            fired += 1
        self._now = ts_ns
        return fired

    def jump_to(self, ts_ns: int) -> None:
        """Move time forward WITHOUT firing what falls in between; repeating timers
        skip to their first due time at or after ``ts_ns``, on their own schedule.

        For a replay whose data starts long after the clock's start: advancing from the
        epoch to 2021 would otherwise fire a one-second timer 1.6 billion times.
        """
        if ts_ns < self._now:
            raise ValueError(f"simulated time cannot go back: now {self._now}, asked {ts_ns}")
        self._now = ts_ns
        self._due.clear()
        for timer in self._timers.values():
            if timer.interval_ns is not None and timer.next_ns < ts_ns:
                missed = -(-(ts_ns - timer.next_ns) // timer.interval_ns)  # ceiling division
                timer.next_ns += missed * timer.interval_ns
            self._schedule(timer)

    async def sleep_until(self, ts_ns: int) -> None:
        """Advance to ``ts_ns`` at once (after every hold is released), then let other
        tasks run before returning."""
        await asyncio.sleep(0)  # a hold taken by what the last step started is seen
        await self._until_released()
        if ts_ns > self._now:
            self.advance_to(ts_ns)
            await self._until_released()  # taken by a timer that fired on the way
        await asyncio.sleep(0)

    async def _until_released(self) -> None:
        while self._holds:
            self._no_holds = asyncio.Event()
            await self._no_holds.wait()

    def _schedule(self, timer: _Timer) -> None:
        heapq.heappush(self._due, (timer.next_ns, next(self._order), timer))
