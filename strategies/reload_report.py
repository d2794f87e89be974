"""What one reload of the strategy configs did, and its Prometheus series."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# What asked for a reload; the label values of the reload series (a fixed set).
TRIGGERS = ("start", "file_watch", "sighup", "admin")


@dataclass(slots=True)
class ReloadReport:
    """Applied, started, stopped, rejected (with field paths) and unchanged strategies, and
    the ``*.yaml`` entries skipped as no regular file (a FIFO, a directory)."""

    trigger: str
    applied: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # not regular files
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.rejected and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


class ReloadCollector(Collector):
    """Reload counts by trigger and each strategy's config version, read at scrape time."""

    def __init__(
        self,
        reloads: dict[str, int],
        failures: dict[str, int],
        versions: Callable[[], dict[str, int]],
    ) -> None:
        self._reloads = reloads
        self._failures = failures
        self._versions = versions

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "trade_engine_config_reloads",
            "Reloads of the strategy config directory, by what asked for them.",
            labels=["trigger"],
        )
        failures = CounterMetricFamily(
            "trade_engine_config_reload_failures",
            "Strategy config files rejected by a reload (the old config kept running).",
            labels=["trigger"],
        )
        for trigger in TRIGGERS:
            reloads.add_metric([trigger], self._reloads[trigger])
            failures.add_metric([trigger], self._failures[trigger])
        yield reloads
        yield failures
        versions = GaugeMetricFamily(
            "trade_engine_strategy_config_version",
            "Version of the config in force per strategy: 1 at start, +1 per applied change.",
            labels=["strategy"],
        )
        for strategy, version in sorted(self._versions().items()):
            versions.add_metric([strategy], version)
        yield versions
