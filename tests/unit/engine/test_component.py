"""Component lifecycle and the dependency-ordered start/stop of a graph."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import (
    Component,
    ComponentContext,
    ComponentGraph,
    ComponentLookup,
    ComponentState,
    DependencyError,
    InvalidStateTransitionError,
    start_order,
)
from engine.config import Secrets
from engine.events import ComponentStateChanged
from tests.factories import bar, heartbeat


class Recorder(Component):
    def __init__(
        self, name, bus, log, depends_on=(), fail_start=False, fail_stop=False, hang_stop=False
    ):
        context = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
        super().__init__(name, None, context, depends_on)
        self.calls = log
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.hang_stop = hang_stop

    async def on_start(self) -> None:
        self.calls.append(f"start:{self.name}")
        if self.fail_start:
            raise RuntimeError("cannot connect")

    async def on_all_started(self) -> None:
        self.calls.append(f"all-started:{self.name}")

    async def on_stop(self) -> None:
        self.calls.append(f"stop:{self.name}")
        if self.fail_stop:
            raise RuntimeError("stuck")
        if self.hang_stop:
            await asyncio.Event().wait()  # e.g. a read that never returns


async def test_lifecycle_publishes_every_transition():
    bus = EventBus()
    changes: list[tuple[str, str]] = []
    bus.subscribe(ComponentStateChanged, lambda e: changes.append((e.previous, e.state)))
    comp = Recorder("feed", bus, [])
    assert comp.state is ComponentState.READY
    await comp.start()
    comp.degrade("reconnecting")
    comp.degrade("reconnecting")  # same reason: no new event
    comp.degrade("rate limited")
    assert comp.health().reason == "rate limited"
    comp.recover()
    await comp.stop()
    assert changes == [
        ("READY", "STARTING"),
        ("STARTING", "RUNNING"),
        ("RUNNING", "DEGRADED"),
        ("DEGRADED", "DEGRADED"),
        ("DEGRADED", "RUNNING"),
        ("RUNNING", "STOPPING"),
        ("STOPPING", "STOPPED"),
    ]


async def test_failed_start_faults_the_component_with_the_reason():
    comp = Recorder("feed", EventBus(), [], fail_start=True)
    with pytest.raises(RuntimeError, match="cannot connect"):
        await comp.start()
    assert comp.state is ComponentState.FAULTED
    assert "cannot connect" in comp.health().reason
    await comp.stop()
    assert comp.state is ComponentState.STOPPED


async def test_a_stopped_component_cannot_be_restarted():
    comp = Recorder("feed", EventBus(), [])
    await comp.start()
    await comp.stop()
    with pytest.raises(InvalidStateTransitionError, match="STOPPED → STARTING"):
        await comp.start()


async def test_graph_starts_in_dependency_order_and_stops_in_reverse():
    bus, calls = EventBus(), []
    api = Recorder("api", bus, calls, depends_on=("strategy",))
    strategy = Recorder("strategy", bus, calls, depends_on=("features",))
    features = Recorder("features", bus, calls, depends_on=("feed",))
    feed = Recorder("feed", bus, calls)
    graph = ComponentGraph([api, strategy, features, feed])
    await graph.start()
    assert graph.all_running()
    await graph.stop()
    assert calls == [
        "start:feed",
        "start:features",
        "start:strategy",
        "start:api",
        "all-started:feed",
        "all-started:features",
        "all-started:strategy",
        "all-started:api",
        "stop:api",
        "stop:strategy",
        "stop:features",
        "stop:feed",
    ]


async def test_graph_start_failure_stops_what_was_started_and_the_failed_one():
    bus, calls = EventBus(), []
    graph = ComponentGraph(
        [
            Recorder("a", bus, calls),
            Recorder("b", bus, calls, depends_on=("a",), fail_start=True),
            Recorder("c", bus, calls, depends_on=("b",)),
        ]
    )
    with pytest.raises(RuntimeError):
        await graph.start()
    assert calls == ["start:a", "start:b", "stop:b", "stop:a"]
    assert graph.get("c").state is ComponentState.READY


async def test_graph_stop_goes_on_when_one_component_fails_to_stop():
    bus, calls = EventBus(), []
    graph = ComponentGraph(
        [Recorder("a", bus, calls), Recorder("b", bus, calls, depends_on=("a",), fail_stop=True)]
    )
    await graph.start()
    await graph.stop()
    assert calls[-2:] == ["stop:b", "stop:a"]
    assert graph.get("b").state is ComponentState.FAULTED
    assert graph.get("a").state is ComponentState.STOPPED


async def test_a_component_that_does_not_stop_in_time_is_faulted_and_the_rest_stop():
    bus, calls = EventBus(), []
    graph = ComponentGraph(
        [
            Recorder("a", bus, calls),
            Recorder("b", bus, calls, depends_on=("a",), hang_stop=True),
            Recorder("c", bus, calls, depends_on=("b",)),
        ]
    )
    await graph.start()
    started = time.monotonic()
    await asyncio.wait_for(graph.stop(timeout_per_component=0.1), 5)
    assert time.monotonic() - started < 1.0
    assert calls[-3:] == ["stop:c", "stop:b", "stop:a"]
    hung = graph.get("b").health()
    assert hung.state is ComponentState.FAULTED
    assert hung.reason == "did not stop within 0.1s"
    assert graph.get("a").state is ComponentState.STOPPED
    assert graph.get("c").state is ComponentState.STOPPED


def test_dependency_cycles_and_unknown_dependencies_are_named():
    bus = EventBus()
    with pytest.raises(DependencyError, match="a → b → a"):
        start_order([Recorder("a", bus, [], ("b",)), Recorder("b", bus, [], ("a",))])
    with pytest.raises(DependencyError, match="'a' depends on unknown 'ghost'"):
        start_order([Recorder("a", bus, [], ("ghost",))])
    with pytest.raises(DependencyError, match="two components are named 'a'"):
        start_order([Recorder("a", bus, []), Recorder("a", bus, [])])


async def test_subscriptions_made_through_the_component_end_when_it_stops():
    from engine.events import Heartbeat

    bus = EventBus()
    comp = Recorder("feed", bus, [])
    seen: list[int] = []
    await comp.start()
    sub = comp.subscribe(Heartbeat, lambda e: seen.append(e.count))
    assert sub.name == "feed.<lambda>"
    bus.publish_nowait(heartbeat(1))
    await comp.stop()
    bus.publish_nowait(heartbeat(2))
    assert seen == [1]
    assert sub not in bus.subscriptions


class _OneGauge:
    def collect(self):
        yield GaugeMetricFamily("trade_engine_test_value", "A test series.", value=1.0)


async def test_a_registered_collector_is_served_while_running_and_removed_at_stop():
    comp = Recorder("feed", EventBus(), [])
    registry = comp.context.metrics_registry
    await comp.start()
    comp.register_collector(_OneGauge())
    assert registry.get_sample_value("trade_engine_test_value") == 1.0
    await comp.stop()
    assert registry.get_sample_value("trade_engine_test_value") is None


async def test_a_collector_registered_before_a_failed_start_is_removed_at_stop():
    comp = Recorder("feed", EventBus(), [], fail_start=True)
    comp.register_collector(_OneGauge())
    with pytest.raises(RuntimeError):
        await comp.start()
    await comp.stop()
    assert comp.context.metrics_registry.get_sample_value("trade_engine_test_value") is None


def test_lookup_finds_a_component_by_name_only_as_its_own_type():
    class Other(Recorder):
        pass

    feed = Recorder("feed", EventBus(), [])
    lookup = feed.context.components
    assert lookup.find(Recorder, "feed") is feed
    assert lookup.find(Other, "feed") is None
    assert lookup.find(Recorder, "missing") is None
    assert lookup.of_type(Recorder) == [feed]
    assert ComponentLookup().find(Recorder, "feed") is None


def test_context_market_view_follows_the_bars_on_its_own_bus_only():
    bus, other = EventBus(), EventBus()
    context = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    elsewhere = ComponentContext(other, SimulatedClock(), CollectorRegistry(), Secrets())
    price = 123.5
    bus.publish_nowait(bar(price, symbol="BTC/USDT"))
    assert context.market_view.last_price("BTC/USDT") == price
    assert elsewhere.market_view.last_price("BTC/USDT") is None
