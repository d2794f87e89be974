"""Live model monitoring: how often each strategy's predicted direction comes true.

The :class:`ModelMonitor` component watches ``Signal`` and ``Bar`` events. A signal's
prediction (1 = up) is scored against the next bar of its symbol: up if that bar closes
strictly above the bar the signal was made on (a flat close counts as not up, like the
training label in :mod:`ml.labels`). Each strategy keeps its last ``window``
scores; the window restarts when the strategy's model version changes, so the rolling
accuracy always describes the model in use.

Metrics (read at scrape time, like the risk manager's): ``trade_engine_model_info``,
``trade_engine_model_rolling_accuracy_ratio``, ``trade_engine_model_predictions_scored_total``
and ``trade_engine_model_signals_total`` (by confidence), labelled by strategy (the
signals' ``strategy_id``, so bounded by the configured strategies).
Signals are matched to bars by symbol only (``Signal`` carries no timeframe): run one
timeframe per symbol, as the shipped configs do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field

from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import Bar, Confidence, Signal
from ml.labels import went_up

METRIC_PREFIX = "trade_engine_model"
CONFIDENCES: tuple[Confidence, ...] = ("high", "medium", "low")


class ModelMonitorConfig(StrictModel):
    window: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Scored predictions per strategy in the rolling accuracy "
        "(restarted when the strategy's model version changes).",
    )


@dataclass(frozen=True, slots=True)
class _Prediction:
    """A signal waiting for the next bar of its symbol."""

    strategy: str
    ts_event: int  # close time of the bar the prediction was made on
    reference_close: float
    prediction: int


@dataclass(slots=True)
class StrategyScore:
    """Rolling and lifetime scores of one strategy's predictions."""

    window: deque[bool]
    model_version: str = ""
    scored_total: int = 0
    signals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONFIDENCES, 0))
    pending: dict[str, _Prediction] = field(default_factory=dict)  # by symbol

    @property
    def rolling_accuracy(self) -> float | None:
        """Share of the window's predictions that came true; None before the first score."""
        if not self.window:
            return None
        return sum(self.window) / len(self.window)


class ModelMonitor(Component):
    """Scores every strategy's predictions against the next bar; exposes rolling accuracy."""

    Config = ModelMonitorConfig

    def __init__(
        self,
        name: str,
        settings: ModelMonitorConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.scores: dict[str, StrategyScore] = {}
        self._last_bar: dict[str, Bar] = {}

    async def on_start(self) -> None:
        self.subscribe(Bar, self.on_bar, name=f"{self.name}.bars")
        self.subscribe(Signal, self.on_signal, name=f"{self.name}.signals")
        try:
            self.register_collector(_ModelCollector(self))
        except ValueError as exc:  # the registry refuses a second set of the same series
            raise RuntimeError(
                f"model monitor {self.name!r}: its metrics are already registered "
                f"(run one model_monitor per engine): {exc}"
            ) from None

    def score_for(self, strategy: str) -> StrategyScore:
        score = self.scores.get(strategy)
        if score is None:
            score = self.scores[strategy] = StrategyScore(deque(maxlen=self.settings.window))
        return score

    def on_signal(self, signal: Signal) -> None:
        score = self.score_for(signal.strategy_id)
        score.signals[signal.confidence] = score.signals.get(signal.confidence, 0) + 1
        if signal.model_version != score.model_version:
            if score.model_version:
                self.log.info(
                    "model_monitor.version_changed",
                    strategy=signal.strategy_id,
                    previous=score.model_version,
                    version=signal.model_version,
                )
            score.model_version = signal.model_version
            score.window.clear()
            score.pending.clear()  # made by the previous model
        bar = self._last_bar.get(signal.symbol)
        if bar is None or bar.ts_event != signal.ts_event:
            return  # the bar it was made on was not seen: nothing to score against
        score.pending[signal.symbol] = _Prediction(
            signal.strategy_id, signal.ts_event, bar.close, signal.prediction
        )

    def on_bar(self, bar: Bar) -> None:
        previous = self._last_bar.get(bar.symbol)
        if previous is not None and bar.ts_event <= previous.ts_event:
            return  # a repeated or out-of-order bar says nothing about the next one
        self._last_bar[bar.symbol] = bar
        for score in self.scores.values():
            waiting = score.pending.pop(bar.symbol, None)
            if waiting is None or waiting.ts_event >= bar.ts_event:
                continue
            correct = waiting.prediction == went_up(waiting.reference_close, bar.close)
            score.window.append(correct)
            score.scored_total += 1


class _ModelCollector(Collector):
    """Model version in use, rolling accuracy and scored predictions, per strategy."""

    def __init__(self, monitor: ModelMonitor) -> None:
        self.monitor = monitor

    def _families(
        self,
    ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                f"{METRIC_PREFIX}_info",
                "1 for the model version each strategy is using (from its latest signal).",
                labels=["strategy", "model_version"],
            ),
            GaugeMetricFamily(
                f"{METRIC_PREFIX}_rolling_accuracy_ratio",
                "Share of the strategy's last N scored predictions whose direction the next "
                "bar confirmed (N = the monitor's window; restarted on a model change).",
                labels=["strategy"],
            ),
            CounterMetricFamily(
                f"{METRIC_PREFIX}_predictions_scored",
                "Predictions scored against the next bar, per strategy.",
                labels=["strategy"],
            ),
            CounterMetricFamily(
                f"{METRIC_PREFIX}_signals",
                "Signals the strategy published, by confidence (high, medium, low).",
                labels=["strategy", "confidence"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        # Named up front so the registry refuses a second monitor's duplicate series.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        info, accuracy, scored, signals = self._families()
        for strategy, score in sorted(self.monitor.scores.items()):
            info.add_metric([strategy, score.model_version], 1.0)
            rolling = score.rolling_accuracy
            if rolling is not None:
                accuracy.add_metric([strategy], rolling)
            scored.add_metric([strategy], score.scored_total)
            for confidence, count in score.signals.items():
                signals.add_metric([strategy, confidence], count)
        yield from (info, accuracy, scored, signals)
