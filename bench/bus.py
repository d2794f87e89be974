"""Event bus throughput: ours vs nautilus_trader's MessageBus vs a dict of callbacks.

Prints events/s for 1 and 10 subscribers with sync handlers (and async handlers for
our bus, which the other two do not have), all in one run on the same events and
the same trivial handler, plus each result as a ratio to nautilus_trader. Every
figure is the best of ``--repeat`` rounds.

    make bench            # or: .venv/bin/python bench/bus.py --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable

from machine import describe_machine

from engine.bus import EventBus
from engine.events import Event, Heartbeat


def make_events(n: int) -> list[Heartbeat]:
    return [Heartbeat(ts_event=i, ts_init=i, count=i) for i in range(n)]


class Counter:
    """The handler: counts, so delivery cannot be optimised away and is checked."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, event: object) -> None:
        self.n += 1


class AsyncCounter(Counter):
    async def handle(self, event: object) -> None:
        self.n += 1


def timed(run: Callable[[], list[Counter]], n_events: int, n_subs: int) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        counters = run()
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    delivered = sum(c.n for c in counters)
    assert delivered == n_events * n_subs, (delivered, n_events * n_subs)
    return n_events / elapsed


def ours_sync(events: list[Heartbeat], n_subs: int, latency_sample_every: int) -> float:
    bus = EventBus(latency_sample_every=latency_sample_every)
    counters = [Counter() for _ in range(n_subs)]
    for c in counters:
        bus.subscribe(Heartbeat, c)
    publish = bus.publish_nowait

    def run() -> list[Counter]:
        for e in events:
            publish(e)
        return counters

    return timed(run, len(events), n_subs)


def ours_async(events: list[Heartbeat], n_subs: int) -> float:
    async def main() -> float:
        bus = EventBus(default_capacity=1024)
        counters = [AsyncCounter() for _ in range(n_subs)]
        for c in counters:
            bus.subscribe(Heartbeat, c.handle)
        gc.collect()
        started = time.perf_counter()
        for e in events:
            await bus.publish(e)
        await bus.drain()
        elapsed = time.perf_counter() - started
        assert sum(c.n for c in counters) == len(events) * n_subs
        await bus.close()
        return len(events) / elapsed

    return asyncio.run(main())


def nautilus_sync(events: list[Heartbeat], n_subs: int) -> float:
    from nautilus_trader.common.component import MessageBus, TestClock
    from nautilus_trader.model.identifiers import TraderId

    bus = MessageBus(trader_id=TraderId("BENCH-001"), clock=TestClock())
    counters = [Counter() for _ in range(n_subs)]
    for c in counters:
        bus.subscribe("events.heartbeat", c)
    publish = bus.publish

    def run() -> list[Counter]:
        for e in events:
            publish("events.heartbeat", e)
        return counters

    return timed(run, len(events), n_subs)


def dict_of_callbacks(events: list[Heartbeat], n_subs: int) -> float:
    counters = [Counter() for _ in range(n_subs)]
    handlers: dict[type[Event], list[Callable[[Event], None]]] = {Heartbeat: list(counters)}

    def run() -> list[Counter]:
        for e in events:
            for handler in handlers[type(e)]:
                handler(e)
        return counters

    return timed(run, len(events), n_subs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = make_events(args.events)

    try:
        import nautilus_trader

        nautilus_version: str | None = nautilus_trader.__version__
    except ImportError:
        nautilus_version = None

    cases: list[tuple[str, Callable[[int], float]]] = [
        ("ours, sync, latency timed 1 in 8 (default)", lambda n: ours_sync(events, n, 8)),
        ("ours, sync, latency timed on every call", lambda n: ours_sync(events, n, 1)),
        ("ours, sync, latency timing off", lambda n: ours_sync(events, n, 0)),
        ("ours, async handlers (inbox + consumer task each)", lambda n: ours_async(events, n)),
        ("dict of callbacks (baseline, no features)", lambda n: dict_of_callbacks(events, n)),
    ]
    if nautilus_version:
        cases.append(
            (f"nautilus_trader {nautilus_version} MessageBus", lambda n: nautilus_sync(events, n))
        )

    print(f"# bench/bus.py: {describe_machine()}")
    print(f"# {args.events:,} events per run, best of {args.repeat} rounds")
    # Round-robin over the cases, keeping each one's best: a burst of noise from the
    # machine then hurts one sample of every case rather than all samples of one.
    results: dict[tuple[str, int], float] = {}
    for _ in range(args.repeat):
        for subs in (1, 10):
            for label, bench in cases:
                rate = bench(subs)
                results[(label, subs)] = max(rate, results.get((label, subs), 0.0))

    reference = cases[-1][0] if nautilus_version else None
    print()
    print("| implementation | subscribers | events/s | vs nautilus |")
    print("|---|---|---|---|")
    for subs in (1, 10):
        for label, _ in cases:
            rate = results[(label, subs)]
            ratio = f"{rate / results[(reference, subs)]:.2f}x" if reference else "n/a"
            print(f"| {label} | {subs} | {rate:,.0f} | {ratio} |")
    if not reference:
        print("\nnautilus_trader is not installed: `make bench` installs the bench extra.")


if __name__ == "__main__":
    main()
