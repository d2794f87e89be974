"""Live and simulated clocks: one interface, timers in order, sleeps that return."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from engine.clock import NANOS_PER_SECOND, LiveClock, SimulatedClock, TimerFired

MS = 1_000_000


def test_simulated_timers_fire_in_time_order_seeing_their_own_time():
    clock = SimulatedClock(start_ns=0)
    fired: list[tuple[str, int, int]] = []

    def record(event: TimerFired) -> None:
        fired.append((event.name, event.scheduled_ns, clock.timestamp_ns()))

    clock.set_timer("every-3", 3, record)
    clock.set_timer("every-5", 5, record)
    clock.set_alert("once-at-4", 4, record)
    assert clock.advance_to(10) == 6
    assert fired == [
        ("every-3", 3, 3),
        ("once-at-4", 4, 4),
        ("every-5", 5, 5),
        ("every-3", 6, 6),
        ("every-3", 9, 9),
        ("every-5", 10, 10),
    ]
    assert clock.timestamp_ns() == 10
    assert clock.timer_names == ["every-3", "every-5"]


def test_simulated_timer_honours_stop_and_cancel():
    clock = SimulatedClock()
    fired: list[int] = []
    clock.set_timer("t", 10, lambda e: fired.append(e.scheduled_ns), stop_ns=30)
    clock.advance_to(100)
    assert fired == [10, 20, 30]
    clock.set_timer("u", 10, lambda e: fired.append(e.scheduled_ns))
    clock.cancel_timer("u")
    clock.advance_to(200)
    assert fired == [10, 20, 30]


def test_simulated_time_never_goes_back():
    clock = SimulatedClock(start_ns=100)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(99)


def test_timer_names_are_unique_and_intervals_positive():
    clock = SimulatedClock()
    clock.set_timer("t", 1, lambda e: None)
    with pytest.raises(ValueError, match="already set"):
        clock.set_timer("t", 1, lambda e: None)
    with pytest.raises(ValueError, match="interval must be > 0"):
        clock.set_timer("z", 0, lambda e: None)


async def test_simulated_sleep_until_advances_at_once_and_fires_timers():
    clock = SimulatedClock()
    fired: list[int] = []
    clock.set_timer("t", NANOS_PER_SECOND, lambda e: fired.append(e.scheduled_ns))
    started = time.perf_counter()
    await clock.sleep_until(3600 * NANOS_PER_SECOND)  # an hour of simulated time
    assert time.perf_counter() - started < 1.0
    assert len(fired) == 3600
    assert clock.timestamp_ns() == 3600 * NANOS_PER_SECOND


async def test_live_clock_timer_fires_on_schedule_and_can_be_cancelled():
    clock = LiveClock()
    fired: list[TimerFired] = []
    clock.set_timer("t", 20 * MS, fired.append)
    await asyncio.sleep(0.11)
    clock.cancel_timer("t")
    count = len(fired)
    assert 3 <= count <= 6
    await asyncio.sleep(0.05)
    assert len(fired) == count
    # Each firing is due exactly one interval after the previous one: no drift.
    due = [f.scheduled_ns for f in fired]
    assert all(b - a == 20 * MS for a, b in itertools.pairwise(due))


async def test_live_clock_skips_firings_missed_while_the_loop_was_blocked():
    clock = LiveClock()
    fired: list[TimerFired] = []
    clock.set_timer("t", 20 * MS, fired.append)
    await asyncio.sleep(0.05)
    before = len(fired)
    time.sleep(0.3)  # noqa: ASYNC251 -- blocking the loop for 15 intervals is the point
    unblocked_ns = time.time_ns()
    await asyncio.sleep(0.05)  # a burst of catch-up calls would all have run by now
    clock.cancel_timer("t")
    missed = [f for f in fired[before:] if f.scheduled_ns < unblocked_ns]
    # The late one and the last one due, not 15 in a row.
    assert 1 <= len(missed) <= 2
    due = [f.scheduled_ns for f in fired]
    gaps = [b - a for a, b in itertools.pairwise(due)]
    assert all(gap % (20 * MS) == 0 for gap in gaps)  # still on its own schedule
    assert max(gaps) >= 13 * 20 * MS  # the ones in between were skipped, not fired


async def test_live_clock_sleep_until_waits_for_the_wall_clock():
    clock = LiveClock()
    target = clock.timestamp_ns() + 30 * MS
    await clock.sleep_until(target)
    assert clock.timestamp_ns() >= target
    await asyncio.wait_for(clock.sleep_until(target - NANOS_PER_SECOND), 0.01)  # past: no wait


async def test_live_alert_fires_once():
    clock = LiveClock()
    fired: list[TimerFired] = []
    clock.set_alert("a", clock.timestamp_ns() + 10 * MS, fired.append)
    await asyncio.sleep(0.05)
    assert len(fired) == 1
    assert clock.timer_names == []


def test_jump_to_skips_what_lies_between_and_restarts_repeating_timers():
    clock = SimulatedClock(start_ns=0)
    fired: list[int] = []
    clock.set_timer("beat", 1_000, lambda e: fired.append(e.scheduled_ns))
    clock.set_alert("later", 10**12 + 500, lambda e: fired.append(e.scheduled_ns))
    clock.jump_to(10**12 + 1)  # from the epoch to "2001": nothing fires on the way
    assert fired == []
    clock.advance_to(10**12 + 2_000)
    # The beat keeps its own grid (multiples of 1,000); the alert keeps its time.
    assert fired == [10**12 + 500, 10**12 + 1_000, 10**12 + 2_000]
    with pytest.raises(ValueError, match="cannot go back"):
        clock.jump_to(5)


async def test_simulated_time_waits_while_held_even_for_a_hold_taken_by_a_timer():
    clock = SimulatedClock(start_ns=0)
    holds = []
    clock.set_alert("retrain", 5, lambda _: holds.append(clock.hold("training")))
    sleeper = asyncio.ensure_future(clock.sleep_until(10))
    for _ in range(5):
        await asyncio.sleep(0)
    # The alert at 5 took a hold: the sleeper (a replay about to publish the bar at 10)
    # does not return until it is released.
    assert not sleeper.done()
    assert clock.held_by == ["training"]
    holds[0].release()
    holds[0].release()  # idempotent
    await asyncio.wait_for(sleeper, 1)
    assert clock.timestamp_ns() == 10

    held = clock.hold("before")
    later = asyncio.ensure_future(clock.sleep_until(20))
    for _ in range(5):
        await asyncio.sleep(0)
    assert clock.timestamp_ns() == 10  # not advanced while held
    held.release()
    await asyncio.wait_for(later, 1)
    assert clock.timestamp_ns() == 20


async def test_the_wall_clock_does_not_wait_for_a_hold():
    clock = LiveClock()
    clock.hold("training")  # never released: nothing waits on it
    before = clock.timestamp_ns()
    await asyncio.wait_for(clock.sleep_until(before + MS), 1)
