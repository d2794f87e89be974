"""The event bus's delivery promises: ordering, isolation, backpressure, drain."""

from __future__ import annotations

import asyncio
import random

import pytest

from engine.bus import Backpressure, BusClosedError, EventBus
from engine.events import Bar, Event, Features, Heartbeat, SubscriberFailed, SubscriberRecovered
from tests.factories import bar, heartbeat


def features_for(b: Bar) -> Features:
    return Features(
        ts_event=b.ts_event,
        ts_init=b.ts_init,
        symbol=b.symbol,
        timeframe=b.timeframe,
        feature_set="seed",
        values={},
    )


class GatedRecorder:
    """An async handler that holds every event until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.handled: list[int] = []

    async def handle(self, event: Heartbeat) -> None:
        await self.release.wait()
        self.handled.append(event.count)


def test_publish_stamps_increasing_sequence_numbers():
    bus = EventBus()
    events = [heartbeat(i) for i in range(5)]
    seqs = [bus.publish_nowait(e) for e in events]
    assert seqs == [1, 2, 3, 4, 5]
    assert [e.seq for e in events] == seqs
    assert bus.sequence == 5


def test_subscriber_receives_its_type_and_wildcard_receives_everything():
    bus = EventBus()
    beats: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(Heartbeat, beats.append)
    bus.subscribe(Event, everything.append)
    bus.publish_nowait(heartbeat(1))
    bus.publish_nowait(bar(ts=2, symbol="BTC/USDT", volume=0.0))
    assert [type(e) for e in beats] == [Heartbeat]
    assert [type(e) for e in everything] == [Heartbeat, Bar]


def test_sync_subscribers_see_events_in_publish_order():
    bus = EventBus()
    seen: dict[str, list[int]] = {"a": [], "b": []}
    bus.subscribe(Heartbeat, lambda e: seen["a"].append(e.count), name="a")
    bus.subscribe(Heartbeat, lambda e: seen["b"].append(e.count), name="b")
    for i in range(1000):
        bus.publish_nowait(heartbeat(i))
    assert seen["a"] == list(range(1000))
    assert seen["b"] == list(range(1000))


def test_event_published_by_a_handler_reaches_everyone_after_the_current_event():
    """A handler that publishes must not make later subscribers see events out of order."""
    bus = EventBus()
    bus.subscribe(Bar, lambda b: bus.publish_nowait(features_for(b)), name="features")
    journal: list[int] = []
    bus.subscribe(Event, lambda e: journal.append(e.seq), name="journal")
    for i in range(100):
        bus.publish_nowait(bar(ts=i, symbol="BTC/USDT", volume=0.0))
    assert journal == list(range(1, 201))


async def test_async_subscriber_sees_events_in_publish_order():
    bus = EventBus()
    seen: list[int] = []

    async def slow_then_fast(event: Heartbeat) -> None:
        await asyncio.sleep(random.random() / 10_000)
        seen.append(event.seq)

    bus.subscribe(Heartbeat, slow_then_fast)
    for i in range(500):
        await bus.publish(heartbeat(i))
    await bus.drain()
    assert seen == list(range(1, 501))


async def test_mixed_sync_and_async_subscribers_each_keep_order():
    bus = EventBus()
    sync_seen: list[int] = []
    async_seen: list[int] = []

    async def record(event: Event) -> None:
        async_seen.append(event.seq)

    bus.subscribe(Event, lambda e: sync_seen.append(e.seq))
    bus.subscribe(Event, record)
    bus.subscribe(Bar, lambda b: bus.publish_nowait(features_for(b)))
    for i in range(200):
        await bus.publish(bar(ts=i, symbol="BTC/USDT", volume=0.0))
    await bus.drain()
    assert sync_seen == list(range(1, 401))
    assert async_seen == list(range(1, 401))


def test_failing_sync_handler_does_not_stop_delivery_to_others():
    bus = EventBus()
    before: list[int] = []
    after: list[int] = []
    bus.subscribe(Heartbeat, lambda e: before.append(e.count), name="before")

    def explode(event: Heartbeat) -> None:
        if event.count % 2:
            raise RuntimeError("boom")

    sub = bus.subscribe(Heartbeat, explode, name="explode")
    bus.subscribe(Heartbeat, lambda e: after.append(e.count), name="after")
    for i in range(10):
        bus.publish_nowait(heartbeat(i))
    assert before == after == list(range(10))
    assert sub.errors == {"Heartbeat": 5}
    assert sub.delivered == 10


class Disk:
    """A critical handler that fails while ``full``, like a journal on a full disk."""

    def __init__(self) -> None:
        self.full = False
        self.written: list[int] = []
        self.hooks: list[str] = []

    def write(self, event: Event) -> None:
        if self.full:
            raise OSError("disk full")
        self.written.append(event.seq)


@pytest.mark.parametrize("sample_every", [0, 1])  # the plain and the timed delivery
async def test_an_event_a_critical_handler_fails_on_reaches_no_later_subscriber(sample_every):
    bus = EventBus(latency_sample_every=sample_every)
    disk = Disk()
    before: list[int] = []
    after: list[int] = []
    queued: list[int] = []
    notices: list[Event] = []

    async def consume(event: Heartbeat) -> None:
        queued.append(event.seq)

    bus.subscribe(Heartbeat, lambda e: before.append(e.seq), name="before")
    sub = bus.subscribe(
        Event,
        disk.write,
        name="disk",
        critical=True,
        on_failure=lambda exc: disk.hooks.append(f"failed: {exc}"),
        on_recovery=lambda: disk.hooks.append("recovered"),
    )
    bus.subscribe(Heartbeat, lambda e: after.append(e.seq), name="after")
    bus.subscribe(Heartbeat, consume, name="queued")
    bus.subscribe(SubscriberFailed, notices.append, name="notices.failed")
    bus.subscribe(SubscriberRecovered, notices.append, name="notices.recovered")
    for i in range(3):
        bus.publish_nowait(heartbeat(i))  # seq 1..3
    disk.full = True
    for i in range(3, 6):
        bus.publish_nowait(heartbeat(i))  # seq 4, then the notice (5), then 6 and 7
    disk.full = False
    bus.publish_nowait(heartbeat(6))  # seq 8, then the recovery notice (9)
    await bus.drain()

    assert before == [1, 2, 3, 4, 6, 7, 8]
    assert after == queued == [1, 2, 3, 8]  # 4, 6 and 7 withheld
    assert [type(n) for n in notices] == [SubscriberFailed, SubscriberRecovered]
    failed = notices[0]
    assert (failed.subscriber, failed.event_type, failed.event_seq, failed.seq) == (
        "disk", "Heartbeat", 4, 5,
    )  # fmt: skip
    assert failed.error == "OSError: disk full"
    assert disk.hooks == ["failed: disk full", "recovered"]  # once each, not per event
    assert disk.written == [1, 2, 3, 8, 9]  # the failure notice reached no disk, but others
    assert sub.withheld == 3
    assert sub.errors == {"Heartbeat": 3, "SubscriberFailed": 1}
    assert [bus.was_withheld(seq) for seq in range(1, 10)] == [
        False, False, False, True, False, True, True, False, False,
    ]  # fmt: skip
    assert not sub.failing


def test_a_critical_handler_must_be_sync():
    async def handler(event: Event) -> None:
        pass

    with pytest.raises(ValueError, match="critical handler must be sync"):
        EventBus().subscribe(Event, handler, critical=True)


def test_a_failing_hook_does_not_break_delivery():
    bus = EventBus()
    disk = Disk()
    seen: list[int] = []

    def hook(exc: Exception) -> None:
        raise RuntimeError("hook")

    bus.subscribe(Heartbeat, disk.write, critical=True, on_failure=hook)
    bus.subscribe(Event, lambda e: seen.append(e.seq))
    disk.full = True
    bus.publish_nowait(heartbeat(1))
    assert seen == [2]  # heartbeat 1 withheld; the notice (2) delivered


async def test_failing_async_handler_keeps_consuming_and_others_are_unaffected():
    bus = EventBus()
    handled: list[int] = []
    other: list[int] = []

    async def flaky(event: Heartbeat) -> None:
        if event.count == 3:
            raise ValueError("bad event")
        handled.append(event.count)

    async def steady(event: Heartbeat) -> None:
        other.append(event.count)

    sub = bus.subscribe(Heartbeat, flaky)
    bus.subscribe(Heartbeat, steady)
    for i in range(6):
        await bus.publish(heartbeat(i))
    await bus.drain()
    assert handled == [0, 1, 2, 4, 5]
    assert other == list(range(6))
    assert sub.errors == {"Heartbeat": 1}


async def test_block_policy_holds_the_publisher_until_the_consumer_catches_up():
    bus = EventBus()
    gate = GatedRecorder()
    sub = bus.subscribe(Heartbeat, gate.handle, capacity=3, backpressure=Backpressure.BLOCK)
    published: list[int] = []

    async def source() -> None:
        for i in range(10):
            await bus.publish(heartbeat(i))
            published.append(i)

    task = asyncio.create_task(source())
    await asyncio.sleep(0.05)
    # The consumer holds one event, the queue is full: the source must be waiting.
    assert not task.done()
    assert len(published) <= 4
    assert sub.depth <= 3
    gate.release.set()
    await asyncio.wait_for(task, 2)
    await bus.drain()
    assert gate.handled == list(range(10))
    assert sub.dropped == 0


async def test_publish_nowait_never_waits_even_when_a_block_queue_is_full():
    bus = EventBus()
    gate = GatedRecorder()
    sub = bus.subscribe(Heartbeat, gate.handle, capacity=2, backpressure=Backpressure.BLOCK)
    for i in range(5):
        bus.publish_nowait(heartbeat(i))
    assert sub.depth == 5  # held, not lost: backpressure applies to awaiting sources
    gate.release.set()
    await bus.drain()
    assert gate.handled == list(range(5))


async def test_a_handler_republishing_into_a_full_block_queue_does_not_deadlock():
    bus = EventBus()
    seen: list[int] = []

    async def echo(event: Heartbeat) -> None:
        seen.append(event.count)
        if event.count < 50:
            await bus.publish(heartbeat(event.count + 100))

    bus.subscribe(Heartbeat, echo, capacity=1, backpressure=Backpressure.BLOCK)
    for i in range(50):
        await bus.publish(heartbeat(i))
    await asyncio.wait_for(bus.drain(), 2)
    assert sorted(seen) == sorted([*range(50), *range(100, 150)])


async def test_drop_oldest_discards_the_oldest_and_counts_them():
    bus = EventBus()
    gate = GatedRecorder()
    sub = bus.subscribe(Heartbeat, gate.handle, capacity=4, backpressure=Backpressure.DROP_OLDEST)
    await bus.publish(heartbeat(0))
    await asyncio.sleep(0)  # the consumer takes event 0 and waits on the gate
    for i in range(1, 21):
        await asyncio.wait_for(bus.publish(heartbeat(i)), 0.5)  # never blocks
    assert sub.depth == 4
    assert sub.dropped == 16
    gate.release.set()
    await bus.drain()
    assert gate.handled == [0, 17, 18, 19, 20]


async def test_drain_delivers_everything_queued_including_events_caused_by_handlers():
    bus = EventBus()
    rng = random.Random(7)
    received: dict[str, list[int]] = {"features": [], "journal": []}

    async def feature_engine(event: Bar) -> None:
        await asyncio.sleep(rng.random() / 5000)
        await bus.publish(features_for(event))

    async def features_sink(event: Features) -> None:
        await asyncio.sleep(rng.random() / 5000)
        received["features"].append(event.ts_event)

    async def journal(event: Event) -> None:
        received["journal"].append(event.seq)

    bus.subscribe(Bar, feature_engine, capacity=8)
    bus.subscribe(Features, features_sink, capacity=8, backpressure=Backpressure.DROP_OLDEST)
    bus.subscribe(Event, journal, capacity=10_000)
    for i in range(300):
        bus.publish_nowait(bar(ts=i, symbol="BTC/USDT", volume=0.0))
    await bus.drain()
    assert bus.sequence == 600
    assert sorted(received["journal"]) == list(range(1, 601))
    dropped = bus.subscriptions[1].dropped
    assert len(received["features"]) + dropped == 300
    assert all(s.depth == 0 for s in bus.subscriptions)


async def test_close_drains_then_rejects_publishing():
    bus = EventBus()
    handled: list[int] = []

    async def record(event: Heartbeat) -> None:
        handled.append(event.count)

    bus.subscribe(Heartbeat, record)
    for i in range(100):
        bus.publish_nowait(heartbeat(i))
    await bus.close()
    assert handled == list(range(100))
    with pytest.raises(BusClosedError):
        bus.publish_nowait(heartbeat(101))


async def test_unsubscribed_async_handler_finishes_what_was_queued():
    bus = EventBus()
    handled: list[int] = []

    async def record(event: Heartbeat) -> None:
        handled.append(event.count)

    sub = bus.subscribe(Heartbeat, record)
    for i in range(5):
        bus.publish_nowait(heartbeat(i))
    bus.unsubscribe(sub)
    bus.publish_nowait(heartbeat(99))
    await bus.drain()
    assert handled == [0, 1, 2, 3, 4]


def test_subscriptions_registered_before_the_loop_runs_are_consumed_once_started():
    bus = EventBus()
    handled: list[int] = []

    async def record(event: Heartbeat) -> None:
        handled.append(event.count)

    bus.subscribe(Heartbeat, record)
    bus.publish_nowait(heartbeat(1))

    async def main() -> None:
        bus.start()
        await bus.drain()

    asyncio.run(main())
    assert handled == [1]


def test_subscriber_names_are_unique_for_metric_labels():
    bus = EventBus()
    a = bus.subscribe(Heartbeat, print, name="journal")
    b = bus.subscribe(Heartbeat, print, name="journal")
    assert (a.name, b.name) == ("journal", "journal#2")


def test_handler_latency_is_sampled_one_event_in_n():
    bus = EventBus(latency_sample_every=4)
    sub = bus.subscribe(Heartbeat, lambda e: None)
    for i in range(40):
        bus.publish_nowait(heartbeat(i))
    assert sub.delivered == 40
    assert sub.latency.count == 10
    assert sub.latency.cumulative()[-1] == 10


async def test_async_handler_latency_is_recorded():
    bus = EventBus(latency_sample_every=1)

    async def slow(event: Heartbeat) -> None:
        await asyncio.sleep(0.002)

    sub = bus.subscribe(Heartbeat, slow)
    for i in range(3):
        bus.publish_nowait(heartbeat(i))
    await bus.drain()
    assert sub.latency.count == 3
    assert sub.latency.sum_ns >= 3 * 2_000_000


def test_subscribing_to_a_non_event_type_is_refused():
    bus = EventBus()
    with pytest.raises(TypeError, match="Event subclass"):
        bus.subscribe(int, print)  # type: ignore[arg-type]
