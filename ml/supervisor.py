"""The retrain supervisor: renews one strategy's model, safely.

One per supervised strategy (``strategy``: its id in a strategy host listed in
``depends_on``). The cycle, every step an event in the journal and a metric:

1. **Trigger** (:mod:`ml.retrain_triggers`): the cron schedule fired by the engine's
   clock, the champion's age, its rolling accuracy, drift of its errors, or an operator.
   No new retraining within ``cooldown_hours`` of the last one or of a rollback, nor while
   one is in training, shadow or canary. ``RetrainStarted``.
2. **Train** in a spawned process (never on the loop) on the last ``window_bars`` bars
   that closed at or before the clock's time: the ``history`` file cut at the clock, plus
   the bars seen on the bus. The leakage check runs as for every training. The version
   is registered whole, then aliased ``challenger``: ``ChallengerRegistered`` (or
   ``RetrainFailed``). Under a simulated clock, time waits for the training
   (:meth:`engine.clock.Clock.hold`), so a replay runs the live controller exactly.
3. **Shadow**: the challenger predicts every bar beside the champion (``ShadowSignal``,
   never a ``Signal``: the risk manager never sees it); both are scored on the same bars.
4. **Gate** after ``gate.shadow_bars`` paired bars (:func:`ml.promotion.decide_promotion`):
   ``PromotionDecided`` with the statistics; promoted → ``ModelPromoted``, the champion
   swapped in the strategy (and so in ``POST /predict``) between two events.
5. **Canary**: the new champion trades ``SizingChanged`` fractions ramping to 1 while the
   previous champion runs in shadow; at the end of the ramp a shortfall beyond the
   margins rolls it back (``ModelRolledBack``), else the history notes it passed.

Crash safety: a registration is whole or invisible, an alias only points at a whole
version; at start the supervisor removes leftovers of a killed training and resumes the
challenger's shadow (from zero) or a canary, saying which in the log. Versions beyond
``keep_versions`` are purged, never an aliased one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, get_args

import pandas as pd
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field

from engine.amm import FEE_BPS
from engine.candles import COLUMNS, read_candles, resolve_data_path
from engine.clock import NANOS_PER_SECOND, TimerFired
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.config_paths import DATA_FILE
from engine.events import (
    Bar,
    ChallengerRegistered,
    Features,
    ModelPromoted,
    ModelRolledBack,
    PromotionDecided,
    RetrainFailed,
    RetrainStarted,
    ShadowSignal,
    Signal,
    SizingChanged,
)
from engine.timeframes import close_times_ns
from ml.labels import went_up
from ml.pipeline import train_and_register
from ml.pnl import net_return, position_after
from ml.promotion import (
    CanarySettings,
    GateDecision,
    GateSettings,
    PairedRecord,
    canary_fraction,
    decide_promotion,
    judge_canary,
)
from ml.registry import ModelRegistry, RegistryError
from ml.retrain_triggers import (
    ChampionWatch,
    Trigger,
    TriggerSettings,
    model_age_due,
    next_schedule_ns,
)
from ml.serving import ModelServer, ModelServers, ServingModel
from ml.training import TrainSettings
from ml.training_process import run_in_spawned_process

NANOS_PER_HOUR = 3600 * NANOS_PER_SECOND
OUTCOMES = ("registered", "failed", "skipped")


class RetrainSupervisorConfig(StrictModel):
    strategy: str = Field(
        description="Id of the supervised strategy (its file's name) in a strategy host "
        "listed in `depends_on`; its model, registry and feature set are the supervisor's."
    )
    history: Annotated[str | None, DATA_FILE] = Field(
        None,
        description="Candle file of the bars before the engine's own (`samples/NAME` for "
        "bundled data), cut at the clock's time at each training; unset: only the bars "
        "seen on the bus.",
    )
    window_bars: int = Field(
        8760, ge=100, description="Training window: the last N bars closed by now."
    )
    min_train_bars: int = Field(
        500, ge=50, description="Fewer bars than this: the retraining fails (RetrainFailed)."
    )
    time_limit: float = Field(60.0, gt=0, description="AutoGluon time budget in seconds.")
    presets: str = Field("medium_quality", description="AutoGluon presets.")
    hyperparameters: dict[str, Any] | None = Field(
        None,
        description="AutoGluon hyperparameters (e.g. `{GBM: {}}`: LightGBM only, fast); "
        "unset: the preset's model zoo.",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs the training may use.")
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    cooldown_hours: float = Field(
        24.0, ge=0, description="Engine hours after a retraining or rollback before another."
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    canary: CanarySettings | None = Field(
        default_factory=CanarySettings,
        description="Ramp a promoted champion's size and roll it back on a shortfall; "
        "null: full size at once, no automatic rollback.",
    )
    keep_versions: int = Field(
        10, ge=1, description="Versions kept besides the aliased ones (older are purged)."
    )
    fee_bps: float = Field(
        float(FEE_BPS), ge=0, description="Swap fee charged to shadow returns (bps)."
    )


class Phase(StrEnum):
    IDLE = "idle"
    TRAINING = "training"
    SHADOW = "shadow"
    CANARY = "canary"


@dataclass(slots=True)
class _Pending:
    ts_event: int
    reference_close: float
    prediction: int
    action: str


@dataclass(slots=True)
class PairedScorer:
    """The champion's and a shadow model's predictions of the same bars, scored when the
    next bar closes: correctness by the label rule, net return by :mod:`ml.pnl`."""

    fee: float
    champion: dict[str, _Pending] = field(default_factory=dict)  # by symbol
    shadow: dict[str, _Pending] = field(default_factory=dict)
    positions: dict[tuple[str, str], float] = field(default_factory=dict)  # (role, symbol)
    champion_correct: list[bool] = field(default_factory=list)
    shadow_correct: list[bool] = field(default_factory=list)
    champion_returns: list[float] = field(default_factory=list)
    shadow_returns: list[float] = field(default_factory=list)

    @property
    def bars(self) -> int:
        return len(self.champion_correct)

    def _score(self, role: str, pending: _Pending, bar: Bar) -> tuple[bool, float]:
        close = bar.close
        correct = pending.prediction == went_up(pending.reference_close, close)
        previous = self.positions.get((role, bar.symbol), 0.0)
        position = position_after(pending.action, previous)  # type: ignore[arg-type]
        self.positions[(role, bar.symbol)] = position
        change = close / pending.reference_close - 1.0
        return correct, net_return(position, previous, change, self.fee)

    def on_bar(self, bar: Bar) -> tuple[bool, float] | None:
        """Score what was predicted for this bar; the champion's score, if it had one."""
        champion = self.champion.pop(bar.symbol, None)
        shadow = self.shadow.pop(bar.symbol, None)
        champion = champion if champion and champion.ts_event < bar.ts_event else None
        shadow = shadow if shadow and shadow.ts_event < bar.ts_event else None
        scored = self._score("champion", champion, bar) if champion else None
        if shadow is not None:
            shadow_scored = self._score("shadow", shadow, bar)
            if scored is not None and shadow.ts_event == champion.ts_event:  # type: ignore[union-attr]
                self.champion_correct.append(scored[0])
                self.champion_returns.append(scored[1])
                self.shadow_correct.append(shadow_scored[0])
                self.shadow_returns.append(shadow_scored[1])
        return scored

    def reset_pairs(self) -> None:
        self.shadow.clear()
        self.positions = {k: v for k, v in self.positions.items() if k[0] == "champion"}
        for series in (
            self.champion_correct, self.shadow_correct, self.champion_returns, self.shadow_returns,
        ):  # fmt: skip
            series.clear()

    def record(self, shadow_is_candidate: bool) -> PairedRecord:
        champion = (self.champion_correct, self.champion_returns)
        shadow = (self.shadow_correct, self.shadow_returns)
        incumbent, candidate = (champion, shadow) if shadow_is_candidate else (shadow, champion)
        return PairedRecord.of(incumbent[0], candidate[0], incumbent[1], candidate[1])

    def accuracy(self, role: str) -> float | None:
        series = self.champion_correct if role == "champion" else self.shadow_correct
        return sum(series) / len(series) if series else None


def training_window(
    history: pd.DataFrame | None, live: Sequence[Bar], timeframe: str, now_ns: int, window_bars: int
) -> pd.DataFrame:
    """The last ``window_bars`` candles that closed at or before ``now_ns``: the history
    file's, with the bars seen live in place of the file's for the same candle."""
    frames = []
    if history is not None and len(history):
        closes = close_times_ns(
            history["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64"), timeframe
        )
        frames.append(history.loc[closes <= now_ns, list(COLUMNS)])
    if live:
        step = timeframe_step_ns(timeframe)
        rows = [
            (
                pd.Timestamp(b.ts_event - step, unit="ns", tz="UTC"),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
            )
            for b in live
            if b.ts_event <= now_ns
        ]
        frames.append(pd.DataFrame(rows, columns=list(COLUMNS)))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
    return frame.tail(window_bars).reset_index(drop=True)


def timeframe_step_ns(timeframe: str) -> int:
    """Open-to-close length of one candle (a month's is taken as 31 days: bars seen live
    on a monthly timeframe are matched to the file by their open time only roughly)."""
    from engine.timeframes import MONTH, timeframe_ns

    return 31 * 24 * NANOS_PER_HOUR if timeframe == MONTH else timeframe_ns(timeframe)


def _serves(server: ModelServer, symbol: str) -> bool:
    symbols = server.settings.symbols
    return not symbols or symbol in symbols


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NANOS_PER_SECOND, UTC).isoformat().replace("+00:00", "Z")


class RetrainSupervisor(Component):
    """Retrains, shadows, promotes, ramps and rolls back one strategy's model."""

    Config = RetrainSupervisorConfig

    def __init__(
        self,
        name: str,
        settings: RetrainSupervisorConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        s = settings
        self.phase = Phase.IDLE
        self.watch = ChampionWatch(s.triggers)
        self.scorer = PairedScorer(s.fee_bps / 10_000)
        self.shadow_model: ServingModel | None = None  # the challenger, or the previous
        self.canary_bars = 0
        self.size_fraction = 1.0
        # (trigger, outcome) → count, every pair at 0 from the start: an alert's
        # increase() sees the first failure only if the series existed before it.
        self.retrains: dict[tuple[str, str], int] = {
            (trigger, outcome): 0 for trigger in get_args(Trigger) for outcome in OUTCOMES
        }
        self.promotions = {"promoted": 0, "rejected": 0, "operator": 0}
        self.rollbacks = 0
        self.last_decision: dict[str, Any] | None = None
        self._servers: ModelServers | None = None
        self._registry: ModelRegistry | None = None
        self._history: pd.DataFrame | None = None
        self._timeframe = ""
        self._live: deque[Bar] = deque(maxlen=self.settings.window_bars)
        self._last_bar: dict[str, Bar] = {}
        self._cool_until = 0
        self._next_schedule = 0
        self._task: asyncio.Task[None] | None = None
        self._timer = f"{name}.schedule"

    # -- wiring ---------------------------------------------------------------------

    @property
    def server(self) -> ModelServer:
        server = self._running_server()
        if server is None:
            raise RuntimeError(
                f"supervisor {self.name!r}: strategy {self.settings.strategy!r} is not running"
            )
        return server

    @property
    def model_name(self) -> str:
        """The supervised strategy's model ("" before start or while it is not running)."""
        server = self._running_server()
        return "" if server is None else server.settings.model

    @property
    def registry(self) -> ModelRegistry:
        assert self._registry is not None, "not started"
        return self._registry

    def _find_servers(self) -> ModelServers:
        for dependency in self.depends_on:
            found = self.context.components.find(Component, dependency)
            if isinstance(found, ModelServers) and found.model_server(self.settings.strategy):
                return found
        raise RuntimeError(
            f"retrain supervisor {self.name!r}: no strategy {self.settings.strategy!r} in the "
            f"components it depends on ({', '.join(self.depends_on) or 'none'}): list its "
            "strategy host in depends_on"
        )

    async def on_start(self) -> None:
        self._servers = self._find_servers()
        server = self.server
        self._registry = ModelRegistry(server.settings.models_dir)
        if self.settings.history:
            path = resolve_data_path(self.settings.history)
            self._history, self._timeframe, _ = await asyncio.to_thread(read_candles, path)
        await asyncio.to_thread(self._recover)
        self.subscribe(Bar, self.on_bar, name=f"{self.name}.bars")
        self.subscribe(Features, self.on_features, name=f"{self.name}.features")
        self.subscribe(Signal, self.on_signal, name=f"{self.name}.signals")
        self.register_collector(_SupervisorCollector(self))

    async def on_all_started(self) -> None:
        if self.phase is Phase.CANARY and self.settings.canary is not None:  # resumed
            start = canary_fraction(0, self.settings.canary)
            self._set_size(start, "canary start", f"{self.name}|canary_resumed")

    async def on_stop(self) -> None:
        self.clock.cancel_timer(self._timer)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _recover(self) -> None:
        """After a restart: drop leftovers, resume a challenger's shadow or a canary."""
        name, registry = self.model_name, self.registry
        removed = registry.remove_incomplete(name)
        if removed:
            self.log.warning(
                "retrain.leftovers_removed",
                model=name,
                paths=[str(p) for p in removed],
                detail="a training or registration was killed half-way; nothing of it was "
                "registered",
            )
        aliases = registry.aliases(name)
        challenger = aliases.get("challenger")
        if challenger is not None:
            try:
                self.shadow_model = self._load(challenger)
            except Exception as exc:
                registry.discard_challenger(name, f"cannot be loaded after a restart: {exc}")
                self.log.warning(
                    "retrain.challenger_discarded", model=name, version=challenger, error=str(exc)
                )
            else:
                self.phase = Phase.SHADOW
                self.log.warning(
                    "retrain.challenger_resumed",
                    model=name,
                    version=challenger,
                    detail="its shadow window starts again from zero after the restart",
                )
            return
        history = registry.history(name)
        last = history[-1] if history else None
        previous = aliases.get("previous")
        if (
            self.settings.canary is not None
            and last is not None
            and last.kind == "promote"
            and last.reason.startswith("gate:")
            and previous is not None
        ):
            self.shadow_model = self._load(previous)
            self.phase = Phase.CANARY
            self.log.warning(
                "retrain.canary_resumed",
                model=name,
                champion=aliases.get("champion"),
                previous=previous,
                detail="the canary window starts again from zero after the restart",
            )

    def _load(self, version: str) -> ServingModel:
        s = self.server.settings
        return ServingModel.load(self.registry, s.model, version, s.feature_set)

    # -- events ---------------------------------------------------------------------

    def _running_server(self) -> ModelServer | None:
        """The strategy, or None while it is not running (its file removed): nothing to
        score or shadow then, and no retraining."""
        return None if self._servers is None else self._servers.model_server(self.settings.strategy)

    def on_signal(self, signal: Signal) -> None:
        if signal.strategy_id != self.settings.strategy:
            return
        bar = self._last_bar.get(signal.symbol)
        if bar is None or bar.ts_event != signal.ts_event:
            return
        self.scorer.champion[signal.symbol] = _Pending(
            signal.ts_event, bar.close, signal.prediction, signal.action
        )

    def on_features(self, features: Features) -> None:
        shadow = self.shadow_model
        if shadow is None or self.phase not in (Phase.SHADOW, Phase.CANARY):
            return
        server = self._running_server()
        if (
            server is None
            or features.feature_set != server.settings.feature_set
            or not _serves(server, features.symbol)
        ):
            return
        bar = self._last_bar.get(features.symbol)
        if bar is None or bar.ts_event != features.ts_event:
            return
        probability_up = shadow.predict_up(features.values)
        prediction, _, action = server.decide(probability_up)
        self.scorer.shadow[features.symbol] = _Pending(
            features.ts_event, bar.close, prediction, action
        )
        self.bus.publish_nowait(
            ShadowSignal(
                ts_event=features.ts_event,
                ts_init=self.clock.timestamp_ns(),
                correlation_id=features.correlation_id,
                strategy_id=self.settings.strategy,
                symbol=features.symbol,
                model_version=shadow.label,
                role="challenger" if self.phase is Phase.SHADOW else "previous",
                prediction=prediction,
                probability_up=probability_up,
                action=action,
            )
        )

    def on_bar(self, bar: Bar) -> None:
        server = self._running_server()
        if server is None or not _serves(server, bar.symbol):
            return
        previous = self._last_bar.get(bar.symbol)
        if previous is not None and bar.ts_event <= previous.ts_event:
            return
        self._last_bar[bar.symbol] = bar
        self._timeframe = self._timeframe or bar.timeframe
        self._live.append(bar)  # the deque keeps the last window_bars
        if not self._next_schedule:
            self._arm_schedule()
        scored = self.scorer.on_bar(bar)
        alarm = self.watch.observe(scored[0]) if scored is not None else None
        if self.phase is Phase.SHADOW and self.scorer.bars >= self.settings.gate.shadow_bars:
            self._decide(bar)
        elif self.phase is Phase.CANARY:
            self._canary_step(bar)
        # Bar-driven triggers wait out the cooldown quietly (a schedule's firing in it is
        # counted as skipped): an alarm that persists fires once the cooldown is over.
        if self.phase is Phase.IDLE and self.engine_now() >= self._cool_until:
            if alarm is not None:
                self.watch.restart()  # hysteresis: judge afresh after an alarm
                self.request_retrain(alarm[0], alarm[1], bar.correlation_id)
                return
            champion = server.model
            trained_until = champion.version.trained_until_ns if champion else 0
            detail = model_age_due(self.settings.triggers, self.engine_now(), trained_until)
            if detail:
                self.request_retrain("model_age", detail, bar.correlation_id)

    def engine_now(self) -> int:
        """Engine time for ages, cooldowns and the training cut: the clock's time, but
        never past the last bar seen (a paper daemon replaying history on the wall clock
        is at its bars' time, not today's: a file cut at today would hold its future)."""
        now = self.clock.timestamp_ns()
        latest = max((bar.ts_event for bar in self._last_bar.values()), default=None)
        return now if latest is None else min(now, latest)

    def _stamp(self, correlation_id: str) -> dict[str, Any]:
        """The fields every supervisor event shares: now, the bar's id, the strategy."""
        now = self.clock.timestamp_ns()
        return {
            "ts_event": now,
            "ts_init": now,
            "correlation_id": correlation_id,
            "strategy_id": self.settings.strategy,
        }

    # -- schedule -------------------------------------------------------------------

    def _arm_schedule(self) -> None:
        schedule = self.settings.triggers.schedule
        if schedule is None:
            self._next_schedule = -1
            return
        self._next_schedule = next_schedule_ns(schedule, self.clock.timestamp_ns())
        self.clock.set_alert(self._timer, self._next_schedule, self._on_schedule)

    def _on_schedule(self, fired: TimerFired) -> None:
        self._arm_schedule()
        self.request_retrain(
            "schedule",
            f"cron {self.settings.triggers.schedule!r} at {_iso(fired.scheduled_ns)}",
            f"{self.name}|schedule|{fired.scheduled_ns}",
        )

    # -- retraining -----------------------------------------------------------------

    def _count(self, trigger: str, outcome: str) -> None:
        self.retrains[(trigger, outcome)] = self.retrains.get((trigger, outcome), 0) + 1

    def request_retrain(self, trigger: Trigger, detail: str, correlation_id: str = "") -> bool:
        """Start a retraining now, unless one is under way or the cooldown runs."""
        now = self.engine_now()
        busy = self.phase is not Phase.IDLE
        if busy or now < self._cool_until:
            self._count(trigger, "skipped")
            self.log.info(
                "retrain.skipped",
                trigger=trigger,
                reason=f"{self.phase} in progress"
                if busy
                else f"cooldown until {_iso(self._cool_until)}",
            )
            return False
        # The cooldown runs from every attempt, a failed one too: no retraining storms.
        self._cool_until = now + int(self.settings.cooldown_hours * NANOS_PER_HOUR)
        frame = (
            training_window(
                self._history, self._live, self._timeframe, now, self.settings.window_bars
            )
            if self._last_bar
            else pd.DataFrame()
        )
        model_name = self.model_name
        refusal = ""
        if not self._last_bar:
            refusal = "no bar seen yet: the training window ends at the last bar seen"
        elif len(frame) < self.settings.min_train_bars:
            refusal = (
                f"{len(frame)} bars closed by now < min_train_bars {self.settings.min_train_bars}"
            )
        if refusal:
            self._count(trigger, "failed")
            self.log.warning("retrain.refused", trigger=trigger, reason=refusal)
            self.bus.publish_nowait(
                RetrainFailed(
                    **self._stamp(correlation_id),
                    model_name=model_name,
                    trigger=trigger,
                    reason=refusal,
                )
            )
            return False
        hold = self.clock.hold(f"{self.name}: retraining")  # simulated time waits for it
        self.phase = Phase.TRAINING
        first = close_times_ns(
            frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")[[0, -1]],
            self._timeframe,
        )
        self.bus.publish_nowait(
            RetrainStarted(
                **self._stamp(correlation_id),
                model_name=model_name,
                trigger=trigger,
                detail=detail,
                data_start=int(first[0]),
                data_end=int(first[1]),
                rows=len(frame),
            )
        )
        self.log.info(
            "retrain.started",
            trigger=trigger,
            detail=detail,
            rows=len(frame),
            data_end=_iso(int(first[1])),
        )
        self._task = asyncio.create_task(
            self._retrain(frame, trigger, correlation_id, hold), name=f"{self.name}.retrain"
        )
        return True

    async def _retrain(
        self, frame: pd.DataFrame, trigger: str, correlation_id: str, hold: Any
    ) -> None:
        s, server = self.settings, self.server
        name = server.settings.model
        train = TrainSettings(
            feature_set=server.settings.feature_set,
            time_limit=s.time_limit,
            presets=s.presets,
            hyperparameters=s.hyperparameters,
            num_cpus=s.num_cpus,
        )
        description = {
            "source": "retrain_supervisor",
            "trigger": trigger,
            "rows": len(frame),
            "history": s.history,
        }
        try:
            result = await run_in_spawned_process(
                train_and_register,
                frame,
                train,
                self.registry,
                name,
                description,
                promote=False,
                timeframe=self._timeframe,
            )
            version = result.model.version
            model = await asyncio.to_thread(self._load, version)
            now = self.clock.timestamp_ns()
            self.registry.set_challenger(name, version, f"retrained ({trigger})", _iso(now))
        except asyncio.CancelledError:
            self.phase = Phase.IDLE
            raise
        except Exception as exc:
            self.phase = Phase.IDLE
            self._count(trigger, "failed")
            reason = f"{type(exc).__name__}: {exc}"
            self.log.error("retrain.failed", trigger=trigger, error=reason)
            now = self.clock.timestamp_ns()
            self.bus.publish_nowait(
                RetrainFailed(
                    **self._stamp(correlation_id),
                    model_name=name,
                    trigger=trigger,
                    reason=reason[:2000],
                )
            )
            return
        finally:
            hold.release()
        self._count(trigger, "registered")
        self.shadow_model = model
        self.scorer.reset_pairs()
        self.phase = Phase.SHADOW
        data_end = int(frame["timestamp"].iloc[-1].value)
        self.bus.publish_nowait(
            ChallengerRegistered(
                **self._stamp(correlation_id),
                model_name=name,
                version=version,
                tuning_accuracy=result.tuning_accuracy,
                data_end=data_end,
            )
        )
        self.log.info(
            "retrain.challenger_registered",
            version=version,
            tuning_accuracy=round(result.tuning_accuracy, 4),
        )

    # -- promotion, canary, rollback ------------------------------------------------

    def _checks(self, candidate: ServingModel) -> list[str]:
        failed = []
        if candidate.version.feature_set != self.server.settings.feature_set:
            failed.append(f"feature set {candidate.version.feature_set!r} is not the strategy's")
        if not candidate.version.metadata.get("settings", {}).get("check_leakage", True):
            failed.append("leakage check was not run")
        return failed

    def _decide(self, bar: Bar) -> None:
        challenger = self.shadow_model
        champion = self.server.model
        assert challenger is not None
        assert champion is not None
        decision = decide_promotion(
            self.scorer.record(shadow_is_candidate=True),
            self.settings.gate,
            self._checks(challenger),
        )
        self._publish_decision(bar, challenger, champion, decision)
        if decision.promote:
            self._promote(challenger, f"gate: {decision.reason}", bar.correlation_id)
        else:
            self.registry.discard_challenger(
                self.model_name, f"gate: {decision.reason}", _iso(bar.ts_event)
            )
            self.shadow_model = None
            self.phase = Phase.IDLE
        self._purge()

    def _publish_decision(
        self, bar: Bar, challenger: ServingModel, champion: ServingModel, decision: GateDecision
    ) -> None:
        self.promotions["promoted" if decision.promote else "rejected"] += 1
        self.last_decision = {
            "promoted": decision.promote,
            "reason": decision.reason,
            **decision.statistics,
        }
        self.bus.publish_nowait(
            PromotionDecided(
                **self._stamp(bar.correlation_id),
                model_name=self.model_name,
                challenger=challenger.label,
                champion=champion.label,
                promoted=decision.promote,
                reason=decision.reason,
                statistics=dict(decision.statistics),
            )
        )
        self.log.info(
            "retrain.promotion_decided", promoted=decision.promote, reason=decision.reason
        )

    def _promote(self, model: ServingModel, reason: str, correlation_id: str) -> None:
        server = self.server
        old = server.model
        now = self.clock.timestamp_ns()
        self.registry.promote(self.model_name, model.version.version, reason, _iso(now))
        server.swap_model(model)
        self.watch.restart()
        self.bus.publish_nowait(
            ModelPromoted(
                **self._stamp(correlation_id),
                model_name=self.model_name,
                version=model.version.version,
                previous=old.label if old else "",
                reason=reason,
                metrics={
                    "tuning_accuracy": float(
                        model.version.metadata.get("metrics", {}).get("tuning_accuracy", 0.0)
                    )
                },
            )
        )
        self.scorer.reset_pairs()
        if self.settings.canary is not None and old is not None and reason.startswith("gate:"):
            self.shadow_model, self.phase, self.canary_bars = old, Phase.CANARY, 0
            self._set_size(canary_fraction(0, self.settings.canary), "canary start", correlation_id)
        else:
            self.shadow_model, self.phase = None, Phase.IDLE
            self._set_size(1.0, "promoted at full size", correlation_id)

    def _set_size(self, fraction: float, reason: str, correlation_id: str) -> None:
        if fraction == self.size_fraction and reason != "canary start":
            return
        self.size_fraction = fraction
        self.bus.publish_nowait(
            SizingChanged(
                **self._stamp(correlation_id),
                fraction=fraction,
                reason=reason,
            )
        )

    def _canary_step(self, bar: Bar) -> None:
        canary = self.settings.canary
        assert canary is not None
        self.canary_bars += 1
        if self.canary_bars < canary.ramp_bars:
            self._set_size(
                canary_fraction(self.canary_bars, canary), "canary ramp", bar.correlation_id
            )
            return
        verdict = judge_canary(self.scorer.record(shadow_is_candidate=False), canary)
        self.last_decision = {"canary": verdict.reason, **verdict.statistics}
        if verdict.promote:
            self.registry.note(self.model_name, "canary_passed", verdict.reason, _iso(bar.ts_event))
            self.log.info("retrain.canary_passed", **{k: v for k, v in verdict.statistics.items()})
            self.shadow_model, self.phase = None, Phase.IDLE
            self._set_size(1.0, "canary passed", bar.correlation_id)
        else:
            previous = self.shadow_model
            assert previous is not None
            self._rollback(
                previous, f"canary: {verdict.reason}", bar.correlation_id, dict(verdict.statistics)
            )

    def _rollback(
        self, previous: ServingModel, reason: str, correlation_id: str, statistics: dict[str, Any]
    ) -> None:
        server = self.server
        current = server.model
        now = self.clock.timestamp_ns()
        self.registry.rollback(self.model_name, reason, _iso(now))
        server.swap_model(previous)
        self.rollbacks += 1
        self.watch.restart()
        self._cool_until = now + int(self.settings.cooldown_hours * NANOS_PER_HOUR)
        self.shadow_model, self.phase = None, Phase.IDLE
        self.scorer.reset_pairs()
        self.bus.publish_nowait(
            ModelRolledBack(
                **self._stamp(correlation_id),
                model_name=self.model_name,
                from_version=current.version.version if current else "",
                to_version=previous.version.version,
                reason=reason,
                statistics=statistics,
            )
        )
        self.log.warning("retrain.rolled_back", reason=reason, to=previous.label)
        self._set_size(1.0, "rolled back", correlation_id)

    def _purge(self) -> None:
        removed = self.registry.purge(self.model_name, self.settings.keep_versions)
        if removed:
            self.log.info("retrain.purged", model=self.model_name, versions=removed)

    # -- operators ------------------------------------------------------------------

    async def operator_promote(self, version: str | None) -> dict[str, Any]:
        """Promote ``version`` (default: the challenger) at full size, now."""
        version = version or self.registry.aliases(self.model_name).get("challenger")
        if version is None:
            raise RegistryError(
                f"model {self.model_name!r} has no challenger to promote: name a version"
            )
        model = await asyncio.to_thread(self._load, version)
        self.promotions["operator"] += 1
        challenger = self.registry.aliases(self.model_name).get("challenger")
        self._promote(model, "operator", f"{self.name}|operator|{self.clock.timestamp_ns()}")
        if challenger not in (None, version):
            self.registry.discard_challenger(
                self.model_name, f"superseded: an operator promoted {version}"
            )
        self.canary_bars = 0
        return self.status()

    async def operator_rollback(self) -> dict[str, Any]:
        """Back to ``previous`` now (a canary in progress ends)."""
        previous = self.registry.aliases(self.model_name).get("previous")
        if previous is None:
            raise RegistryError(
                f"model {self.model_name!r} has no previous champion to roll back to"
            )
        model = await asyncio.to_thread(self._load, previous)
        self._rollback(model, "operator", f"{self.name}|operator|{self.clock.timestamp_ns()}", {})
        return self.status()

    async def operator_retrain(self) -> dict[str, Any]:
        started = self.request_retrain(
            "operator", "asked by an operator", f"{self.name}|operator|{self.clock.timestamp_ns()}"
        )
        return {**self.status(), "started": started}

    # -- status ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        try:
            aliases = self.registry.aliases(self.model_name)
        except (AssertionError, RuntimeError):
            aliases = {}
        return {
            "strategy": self.settings.strategy,
            "phase": str(self.phase),
            "aliases": aliases,
            "paired_bars": self.scorer.bars,
            "canary_bars": self.canary_bars,
            "size_fraction": self.size_fraction,
            "champion_rolling_accuracy": self.watch.rolling_accuracy,
            "next_schedule": _iso(self._next_schedule) if self._next_schedule > 0 else None,
            "cooldown_until": _iso(self._cool_until) if self._cool_until else None,
            "retrains": {f"{t}/{o}": n for (t, o), n in sorted(self.retrains.items()) if n},
            "promotions": dict(self.promotions),
            "rollbacks": self.rollbacks,
            "last_decision": self.last_decision,
        }


class _SupervisorCollector(Collector):
    """Model age, paired accuracies, retrains, promotions, rollbacks, canary fraction."""

    def __init__(self, supervisor: RetrainSupervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        strategy = sup.settings.strategy
        age = GaugeMetricFamily(
            "trade_engine_model_age_seconds",
            "Engine time since the last bar the champion was trained on.",
            labels=["strategy"],
        )
        try:
            champion = sup.server.model
        except RuntimeError:
            champion = None
        if champion is not None and champion.version.trained_until_ns:
            age.add_metric(
                [strategy],
                (sup.clock.timestamp_ns() - champion.version.trained_until_ns) / NANOS_PER_SECOND,
            )
        yield age
        accuracy = GaugeMetricFamily(
            "trade_engine_model_paired_accuracy_ratio",
            "Accuracy over the bars both the champion and the model in shadow predicted "
            "(role: champion, challenger, or previous during a canary).",
            labels=["strategy", "role"],
        )
        shadow_role = "challenger" if sup.phase is Phase.SHADOW else "previous"
        for role, key in (("champion", "champion"), (shadow_role, "shadow")):
            value = sup.scorer.accuracy(key)
            if value is not None and sup.phase in (Phase.SHADOW, Phase.CANARY):
                accuracy.add_metric([strategy, role], value)
        yield accuracy
        retrains = CounterMetricFamily(
            "trade_engine_model_retrains",
            "Retrainings by trigger and outcome (registered, failed, skipped).",
            labels=["strategy", "trigger", "outcome"],
        )
        for (trigger, outcome), count in sorted(sup.retrains.items()):
            retrains.add_metric([strategy, trigger, outcome], count)
        yield retrains
        promotions = CounterMetricFamily(
            "trade_engine_model_promotion_decisions",
            "Promotions: the gate's decisions (promoted, rejected) and operators' (operator).",
            labels=["strategy", "outcome"],
        )
        for outcome, count in sorted(sup.promotions.items()):
            promotions.add_metric([strategy, outcome], count)
        yield promotions
        rollbacks = CounterMetricFamily(
            "trade_engine_model_rollbacks", "Automatic and operator rollbacks.", labels=["strategy"]
        )
        rollbacks.add_metric([strategy], sup.rollbacks)
        yield rollbacks
        canary = GaugeMetricFamily(
            "trade_engine_model_canary_fraction",
            "Share of the normal order size the champion trades (1 outside a canary).",
            labels=["strategy"],
        )
        canary.add_metric([strategy], sup.size_fraction)
        yield canary
        phase = GaugeMetricFamily(
            "trade_engine_model_retrain_phase",
            "1 for the supervisor's phase.",
            labels=["strategy", "phase"],
        )
        for candidate in Phase:
            phase.add_metric([strategy, candidate.value], 1.0 if sup.phase is candidate else 0.0)
        yield phase
