"""Prometheus metrics of the engine core, in the app's own CollectorRegistry.

The bus keeps plain integer counters on its hot path; :class:`BusCollector` turns them
into metric families only when Prometheus scrapes, so publishing pays no lock or
label lookup. Components register their own metrics on the same registry.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector

from engine import __version__
from engine.bus import EventBus
from engine.component import ComponentHealth, ComponentState
from engine.market_view import BusMarketView

# Counters and histograms made with prometheus_client's classes (the prediction API's)
# would each add a `_created` gauge family: noise that Prometheus conventions do not ask for.
disable_created_metrics()

NAMESPACE = "trade_engine"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class BusCollector(Collector):
    """Reads the bus's counters at scrape time."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        bus = self.bus
        published = CounterMetricFamily(
            f"{NAMESPACE}_bus_published_events",
            "Events published on the bus, by event type.",
            labels=["event_type"],
        )
        for event_type, count in sorted(bus.published.items(), key=lambda kv: kv[0].__name__):
            published.add_metric([event_type.__name__], count)
        yield published

        yield GaugeMetricFamily(
            f"{NAMESPACE}_bus_sequence",
            "Sequence number of the last event published.",
            value=bus.sequence,
        )

        handled = CounterMetricFamily(
            f"{NAMESPACE}_bus_handled_events",
            "Events handed to a subscriber's handler (whether or not it raised).",
            labels=["subscriber"],
        )
        errors = CounterMetricFamily(
            f"{NAMESPACE}_bus_handler_errors",
            "Handler calls that raised, by subscriber and event type.",
            labels=["subscriber", "event_type"],
        )
        dropped = CounterMetricFamily(
            f"{NAMESPACE}_bus_dropped_events",
            "Events discarded by a drop_oldest subscriber whose queue was full.",
            labels=["subscriber"],
        )
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_bus_queue_depth",
            "Events waiting in an async subscriber's queue.",
            labels=["subscriber"],
        )
        capacity = GaugeMetricFamily(
            f"{NAMESPACE}_bus_queue_capacity",
            "Queue size at which an async subscriber applies its backpressure policy.",
            labels=["subscriber", "backpressure"],
        )
        withheld = CounterMetricFamily(
            f"{NAMESPACE}_bus_withheld_events",
            "Events a critical subscriber (the journal) failed on, kept from the rest.",
            labels=["subscriber"],
        )
        latency = HistogramMetricFamily(
            f"{NAMESPACE}_bus_handler_duration_seconds",
            "Time a handler took per event.",
            labels=["subscriber"],
        )
        for sub in bus.subscriptions:
            handled.add_metric([sub.name], sub.delivered)
            for event_type, count in sorted(sub.errors.items()):
                errors.add_metric([sub.name, event_type], count)
            if sub.critical:
                withheld.add_metric([sub.name], sub.withheld)
            if sub.is_async:
                dropped.add_metric([sub.name], sub.dropped)
                depth.add_metric([sub.name], sub.depth)
                capacity.add_metric([sub.name, str(sub.backpressure)], sub.capacity)
            sub.latency.add_to(latency, [sub.name])
        yield from (handled, errors, withheld, dropped, depth, capacity, latency)


class ComponentCollector(Collector):
    """One gauge per component and state: 1 for the state it is in, 0 otherwise."""

    def __init__(self, health: Callable[[], list[ComponentHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_component_state",
            "Lifecycle state of each component (1 = current state).",
            labels=["component", "state"],
        )
        for item in self.health():
            for state in ComponentState:
                family.add_metric([item.name, state.value], 1.0 if item.state is state else 0.0)
        yield family


class MarketCollector(Collector):
    """When the last bar of each symbol arrived: what a "market data stale" alert reads.

    A timestamp, not an age, so the alert measures it against Prometheus's own clock
    (``time() - …``) and still sees the age grow if the daemon stops being scraped.
    """

    def __init__(self, market: BusMarketView) -> None:
        self.market = market

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_market_last_bar_timestamp_seconds",
            "Engine-clock time the symbol's last bar was received (ts_init), in Unix seconds.",
            labels=["symbol"],
        )
        for symbol in self.market.symbols():
            received = self.market.last_bar_time_ns(symbol)
            if received is not None:
                family.add_metric([symbol], received / 1e9)
        yield family


class EngineMetrics:
    """The daemon's registry: process, bus, component and market metrics, plus build info."""

    def __init__(
        self,
        bus: EventBus,
        health: Callable[[], list[ComponentHealth]],
        market: BusMarketView,
    ) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(BusCollector(bus))
        self.registry.register(ComponentCollector(health))
        self.registry.register(MarketCollector(market))
        build = Gauge(
            f"{NAMESPACE}_build_info",
            "Always 1; labels carry the engine and Python versions.",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric in the registry."""
        return generate_latest(self.registry)
