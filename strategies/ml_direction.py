"""The strategy component: `Features` in, `Signal` out, through a registered model.

Confidence follows the seed: the probability of the predicted direction,
``max(p_up, 1 - p_up)``, is ``high`` above 0.7, ``medium`` above 0.5, else ``low``.
The seed's trade rule is the default: BUY on a high-confidence up, SELL on a
high-confidence down, HOLD otherwise. Both thresholds live in the strategy config.
Inference runs inline (about a millisecond for a model trained with the default
inference budget); the model is loaded off the loop at start.

Features of another timeframe than the model was trained on get no signal: the
strategy logs it once, goes DEGRADED naming both timeframes, and stays so until new
settings are applied (``allow_timeframe_mismatch: true`` trades on them anyway).

Settings can be swapped while running (:meth:`MLDirectionStrategy.apply_settings`):
the settings, the model they name and their version travel as one immutable
:class:`ActiveConfig`, replaced by a single assignment, so each event is handled
wholly under one config.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from engine.candles import resolve_data_path
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.config_paths import DATA_FILE, NEW_DIRECTORY
from engine.events import Action, Confidence, Features, Signal
from ml.confidence import TradeOn, action_of, confidence_level, trading_levels
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.serving import ServingModel, TimeframeMismatchError, check_timeframe
from ml.training import TrainSettings
from ml.training_process import run_in_spawned_process


class FirstModelConfig(StrictModel):
    data: Annotated[str, DATA_FILE] = Field(
        description="Candle file to train on; `samples/NAME` for bundled data."
    )
    until: str | None = Field(
        None, description="Train only on candles opening before this time (ISO-8601)."
    )
    time_limit: float = Field(60.0, gt=0, description="AutoGluon time budget in seconds.")


class MLDirectionConfig(StrictModel):
    model: str = Field(description="Model name in the registry.")
    models_dir: Annotated[str, NEW_DIRECTORY] = Field("models", description="Model registry root.")
    version: str | None = Field(None, description="Model version; unset: the current one.")
    feature_set: str = Field("seed", description="Feature set the engine computes.")
    symbols: tuple[str, ...] = Field((), description="Only these symbols (empty: all).")
    high_confidence: float = Field(0.7, gt=0.5, lt=1, description="`high` above this.")
    medium_confidence: float = Field(0.5, ge=0.5, lt=1, description="`medium` above this.")
    trade_on: TradeOn = Field(
        "high", description="Lowest confidence that makes the rule BUY or SELL."
    )
    train_if_missing: FirstModelConfig | None = Field(
        None, description="When the registry has no model yet, train one first (logged)."
    )
    allow_timeframe_mismatch: bool = Field(
        False,
        description="Trade on features of another timeframe than the model was trained on "
        "(refused otherwise: no signal, the strategy DEGRADED).",
    )

    @field_validator("medium_confidence")
    @classmethod
    def _below_high(cls, medium: float, info: ValidationInfo) -> float:
        # A field validator (not a model one) so the error names medium_confidence.
        high = info.data.get("high_confidence")
        if high is not None and medium >= high:
            raise ValueError(f"must be below high_confidence ({high:g}), got {medium:g}")
        return medium


def _model_key(settings: MLDirectionConfig) -> tuple[str, str, str | None, str]:
    """What selects the model: a change here means loading another one."""
    return (settings.models_dir, settings.model, settings.version, settings.feature_set)


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """The settings in force with everything derived from them, swapped as one object."""

    settings: MLDirectionConfig
    model: ServingModel
    version: int
    content_hash: str
    symbols: frozenset[str]
    trading: frozenset[Confidence]
    timeframe: str | None  # the model's

    @classmethod
    def of(
        cls, settings: MLDirectionConfig, model: ServingModel, version: int, content_hash: str
    ) -> ActiveConfig:
        trading = trading_levels(settings.trade_on)
        symbols = frozenset(settings.symbols)
        timeframe = model.version.timeframe
        return cls(settings, model, version, content_hash, symbols, trading, timeframe)


class MLDirectionStrategy(Component):
    """Predicts the next bar's direction for each `Features` event and publishes a `Signal`."""

    Config = MLDirectionConfig

    def __init__(
        self,
        name: str,
        settings: MLDirectionConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
        *,
        config_version: int = 1,
        config_hash: str = "",
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self._initial_version = (config_version, config_hash)
        self._active: ActiveConfig | None = None
        self._seen_symbols: set[str] = set()
        # (model label, timeframe) → may it predict on features of that timeframe
        self._timeframe_verdicts: dict[tuple[str, str], bool] = {}
        self.signals_published = 0

    @property
    def settings(self) -> MLDirectionConfig:
        return self._built_with if self._active is None else self._active.settings

    @settings.setter
    def settings(self, value: MLDirectionConfig) -> None:
        # Only the base class sets it, at construction; later ones come by apply_settings.
        self._built_with = value

    @property
    def model(self) -> ServingModel | None:
        return None if self._active is None else self._active.model

    @property
    def active(self) -> ActiveConfig:
        if self._active is None:
            raise RuntimeError(f"strategy {self.name!r} has no model yet (not started)")
        return self._active

    async def on_start(self) -> None:
        s, (version, content_hash) = self._built_with, self._initial_version
        if s.train_if_missing and ModelRegistry(s.models_dir).current(s.model) is None:
            await self._train_first_model(s.train_if_missing)
        model = await self._load_model(s)
        self._active = ActiveConfig.of(s, model, version, content_hash)
        self.log.info("strategy.model_loaded", model=model.label, best=model.model_name)
        self.subscribe(Features, self.on_features, name=f"{self.name}.on_features")

    @staticmethod
    async def _load_model(settings: MLDirectionConfig) -> ServingModel:
        return await asyncio.to_thread(
            ServingModel.load,
            settings.models_dir,
            settings.model,
            settings.version,
            settings.feature_set,
        )

    async def apply_settings(
        self, settings: MLDirectionConfig, *, version: int, content_hash: str
    ) -> ActiveConfig:
        """Put ``settings`` in force; a model they newly name is loaded off the loop first.

        Raises (``ModelLoadError``, ``OSError``) with the old config still in force.
        """
        current = self.active
        model = current.model
        if _model_key(settings) != _model_key(current.settings):
            model = await self._load_model(settings)
            self.log.info("strategy.model_loaded", model=model.label, best=model.model_name)
        new = ActiveConfig.of(settings, model, version, content_hash)
        # The swap is this one assignment, made on the loop thread between two handler
        # calls: on_features is synchronous (nothing else runs while it runs) and reads
        # self._active once, so every event is handled wholly under the old config or
        # wholly under the new one, never a mix of the two.
        self._active = new
        self._timeframe_verdicts.clear()  # judged again under the new settings
        self.recover()
        return new

    def swap_model(self, model: ServingModel) -> None:
        """Serve ``model`` under the settings in force (a promotion or a rollback by the
        retrain supervisor); like :meth:`apply_settings`, one assignment between events.
        ``POST /predict`` following this strategy answers with it from the same moment."""
        current = self.active
        self._active = ActiveConfig.of(
            current.settings, model, current.version, current.content_hash
        )
        self._timeframe_verdicts.clear()
        self.log.info("strategy.model_swapped", model=model.label, previous=current.model.label)

    def decide(self, probability_up: float) -> tuple[int, Confidence, Action]:
        """Prediction, confidence and action this strategy's rule draws from ``probability_up``."""
        active = self.active
        prediction = int(probability_up > 0.5)
        confidence = confidence_of(probability_up, active.settings)
        return prediction, confidence, action_of(prediction, confidence, active.trading)

    def close_positions(self) -> list[Signal]:
        """Publish a SELL for each of this strategy's symbols (the risk manager sizes it).

        Used when the strategy is removed with ``on_remove: close``. It is an exit, not a
        prediction: ``prediction`` 0 and ``probability_up`` 0.0 mark it as such.
        """
        active = self.active
        now = self.clock.timestamp_ns()
        symbols = sorted(active.symbols or self._seen_symbols)
        signals = [
            Signal(
                ts_event=now,
                ts_init=now,
                correlation_id=f"{self.name}|on_remove|{symbol}|{now}",
                strategy_id=self.name,
                symbol=symbol,
                prediction=0,
                probability_up=0.0,
                confidence="high",
                action="SELL",
                model_version=active.model.label,
                config_version=active.version,
            )
            for symbol in symbols
        ]
        for signal in signals:
            self.bus.publish_nowait(signal)
        return signals

    def status(self) -> dict[str, Any]:
        """Model and config in force, for ``GET /status``."""
        active = self._active
        if active is None:
            return {"model_version": None, "config_version": None, "config_hash": None}
        return {
            "model_version": active.model.label,
            "config_version": active.version,
            "config_hash": active.content_hash,
            "settings": active.settings.model_dump(mode="json"),
            "signals_published": self.signals_published,
        }

    async def _train_first_model(self, first: FirstModelConfig) -> None:
        s = self.settings
        path = resolve_data_path(first.data)
        self.log.warning(
            "strategy.training_first_model",
            message=f"no model {s.model!r} in {s.models_dir}: training one now on {path} "
            f"(until {first.until or 'the end'}, {first.time_limit:g} s budget); "
            "train properly with `trade-engine train`",
        )
        settings = TrainSettings(feature_set=s.feature_set, time_limit=first.time_limit)
        # In a spawned process (see ml.training_process): the loop stays free and
        # a stop during start-up ends the training at once.
        result = await run_in_spawned_process(
            train_from_file,
            path,
            settings,
            ModelRegistry(s.models_dir),
            s.model,
            promote=True,
            until=first.until,
        )
        self.log.warning(
            "strategy.first_model_trained",
            model=f"{result.model.name}/{result.model.version}",
            tuning_accuracy=round(result.tuning_accuracy, 4),
        )

    def confidence(self, probability_up: float) -> Confidence:
        return confidence_of(probability_up, self.settings)

    def action(self, prediction: int, confidence: Confidence) -> Action:
        return action_of(prediction, confidence, self.active.trading)

    def on_features(self, features: Features) -> None:
        active = self._active  # read once: this whole event is handled under one config
        assert active is not None
        settings = active.settings
        if features.feature_set != settings.feature_set:
            return
        if active.symbols and features.symbol not in active.symbols:
            return
        if features.timeframe != active.timeframe and not self._may_predict_on(
            active, features.timeframe
        ):
            return
        self._seen_symbols.add(features.symbol)
        probability_up = active.model.predict_up(features.values)
        prediction = int(probability_up > 0.5)
        confidence = confidence_of(probability_up, settings)
        action = action_of(prediction, confidence, active.trading)
        self.signals_published += 1
        self.bus.publish_nowait(
            Signal(
                ts_event=features.ts_event,
                ts_init=self.clock.timestamp_ns(),
                correlation_id=features.correlation_id,
                strategy_id=self.name,
                symbol=features.symbol,
                prediction=prediction,
                probability_up=probability_up,
                confidence=confidence,
                action=action,
                model_version=active.model.label,
                config_version=active.version,
            )
        )

    def _may_predict_on(self, active: ActiveConfig, timeframe: str) -> bool:
        """Whether the model in force may predict on features of ``timeframe``; judged
        (and logged) once per model and timeframe."""
        key = (active.model.label, timeframe)
        verdict = self._timeframe_verdicts.get(key)
        if verdict is not None:
            return verdict
        try:
            warning = check_timeframe(
                active.model.version,
                timeframe,
                allow=active.settings.allow_timeframe_mismatch,
                override="set allow_timeframe_mismatch: true in the strategy config",
            )
        except TimeframeMismatchError as exc:
            self.log.error("strategy.timeframe_mismatch", model=active.model.label, error=str(exc))
            self.degrade(str(exc))
            verdict = False
        else:
            if warning:
                self.log.warning("strategy.timeframe_mismatch_allowed", detail=warning)
            verdict = True
        self._timeframe_verdicts[key] = verdict
        return verdict


def confidence_of(probability_up: float, settings: MLDirectionConfig) -> Confidence:
    return confidence_level(probability_up, settings.high_confidence, settings.medium_confidence)
