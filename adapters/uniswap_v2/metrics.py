"""Prometheus metrics of a DEX executor, read from plain counters at scrape time.

The executor bumps integers in :class:`ExecutorStats` on its own path; the collector
turns them into metric families only when Prometheus scrapes, like the bus does.
``describe()`` returns nothing, so several executors can share one registry (each
series carries a ``component`` label).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

PREFIX = "trade_engine_dex"
LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class ExecutorStats:
    submitted: int = 0
    filled: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    replacements: int = 0
    gas_paid_wei: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum: float = 0.0

    def failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def observe_latency(self, seconds: float) -> None:
        self.latency_buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum += seconds


class ExecutorCollector(Collector):
    def __init__(
        self,
        component: str,
        stats: ExecutorStats,
        pending: Callable[[], int],
        oldest_pending: Callable[[], float],
        resyncs: Callable[[], int],
        failed_polls: Callable[[], int],
    ) -> None:
        self.component = component
        self.stats = stats
        self.pending = pending
        self.oldest_pending = oldest_pending
        self.resyncs = resyncs
        self.failed_polls = failed_polls

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        c, s = [self.component], self.stats
        orders = CounterMetricFamily(
            f"{PREFIX}_orders", "Orders by outcome.", labels=["component", "outcome"]
        )
        orders.add_metric([*c, "submitted"], s.submitted)
        orders.add_metric([*c, "filled"], s.filled)
        orders.add_metric([*c, "failed"], sum(s.failures.values()))
        yield orders
        failures = CounterMetricFamily(
            f"{PREFIX}_order_failures",
            "Failed orders by reason code.",
            labels=["component", "reason"],
        )
        for reason, count in sorted(s.failures.items()):
            failures.add_metric([*c, reason], count)
        yield failures
        pending = GaugeMetricFamily(
            f"{PREFIX}_orders_pending",
            "Orders sent whose receipt has not come within the receipt timeout.",
            labels=["component"],
        )
        pending.add_metric(c, self.pending())
        yield pending
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_seconds",
            "How long the longest-PENDING order has been PENDING; 0 when none is.",
            labels=["component"],
        )
        oldest.add_metric(c, self.oldest_pending())
        yield oldest
        for name, doc, value in (
            (
                "nonce_resyncs",
                "Nonce re-reads from the chain after 'nonce too low'.",
                self.resyncs(),
            ),
            ("replacements", "Stuck transactions re-sent with the same nonce.", s.replacements),
            (
                "receipt_poll_failures",
                "Receipt polls the node did not answer.",
                self.failed_polls(),
            ),
            ("gas_paid_wei", "Gas paid by mined swaps, in wei.", s.gas_paid_wei),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["component"])
            family.add_metric(c, value)
            yield family
        latency = HistogramMetricFamily(
            f"{PREFIX}_submit_to_receipt_seconds",
            "Time from sending a swap to having its receipt.",
            labels=["component"],
        )
        running, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), s.latency_buckets, strict=True):
            running += count
            buckets.append((str(bound) if bound != float("inf") else "+Inf", running))
        latency.add_metric(c, buckets, s.latency_sum)
        yield latency
