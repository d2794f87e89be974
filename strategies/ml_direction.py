"""The strategy component: `Features` in, `Signal` out, through a registered model.

Confidence follows the seed: the probability of the predicted direction,
``max(p_up, 1 - p_up)``, is ``high`` above 0.7, ``medium`` above 0.5, else ``low``.
The seed's trade rule is the default: BUY on a high-confidence up, SELL on a
high-confidence down, HOLD otherwise. Both thresholds live in the strategy config.
Inference runs inline (about a millisecond for a model trained with the default
inference budget); the model is loaded off the loop at start.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Literal

from pydantic import Field, model_validator

from adapters.market.replay import resolve_data_path
from engine.component import Component
from engine.config import StrictModel
from engine.events import Action, Confidence, Features, Signal
from engine.registry import ComponentContext
from strategies.model import TrainSettings
from strategies.model_registry import ModelRegistry
from strategies.serving import ServingModel
from strategies.train import train_from_file


class FirstModelConfig(StrictModel):
    data: str = Field(description="Candle file to train on; `samples/NAME` for bundled data.")
    until: str | None = Field(
        None, description="Train only on candles opening before this time (ISO-8601)."
    )
    time_limit: float = Field(60.0, gt=0, description="AutoGluon time budget in seconds.")


class MLDirectionConfig(StrictModel):
    model: str = Field(description="Model name in the registry.")
    models_dir: str = Field("models", description="Model registry root.")
    version: str | None = Field(None, description="Model version; unset: the current one.")
    feature_set: str = Field("seed", description="Feature set the engine computes.")
    symbols: tuple[str, ...] = Field((), description="Only these symbols (empty: all).")
    high_confidence: float = Field(0.7, gt=0.5, lt=1, description="`high` above this.")
    medium_confidence: float = Field(0.5, ge=0.5, lt=1, description="`medium` above this.")
    trade_on: Literal["high", "medium"] = Field(
        "high", description="Lowest confidence that makes the rule BUY or SELL."
    )
    train_if_missing: FirstModelConfig | None = Field(
        None, description="When the registry has no model yet, train one first (logged)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> MLDirectionConfig:
        if self.medium_confidence >= self.high_confidence:
            raise ValueError("medium_confidence must be below high_confidence")
        return self


class MLDirectionStrategy(Component):
    """Predicts the next bar's direction for each `Features` event and publishes a `Signal`."""

    Config = MLDirectionConfig

    def __init__(
        self,
        name: str,
        settings: MLDirectionConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, context.bus, context.clock, depends_on)
        self.settings = settings
        self.model: ServingModel | None = None
        self._symbols = frozenset(settings.symbols)

    async def on_start(self) -> None:
        s = self.settings
        if s.train_if_missing and ModelRegistry(s.models_dir).current(s.model) is None:
            await self._train_first_model(s.train_if_missing)
        self.model = await asyncio.to_thread(
            ServingModel.load, s.models_dir, s.model, s.version, s.feature_set
        )
        self.log.info("strategy.model_loaded", model=self.model.label, best=self.model.model_name)
        self.subscribe(Features, self.on_features, name=f"{self.name}.on_features")

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
        # Training runs in its own process: it keeps the loop free, and the thread pools
        # it leaves behind made single-row inference ten times slower when in-process.
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            result = await asyncio.get_running_loop().run_in_executor(
                pool,
                functools.partial(
                    train_from_file,
                    path,
                    settings,
                    ModelRegistry(s.models_dir),
                    s.model,
                    promote=True,
                    until=first.until,
                ),
            )
        self.log.warning(
            "strategy.first_model_trained",
            model=f"{result.model.name}/{result.model.version}",
            tuning_accuracy=round(result.tuning_accuracy, 4),
        )

    def confidence(self, probability_up: float) -> Confidence:
        certainty = max(probability_up, 1.0 - probability_up)
        if certainty > self.settings.high_confidence:
            return "high"
        if certainty > self.settings.medium_confidence:
            return "medium"
        return "low"

    def action(self, prediction: int, confidence: Confidence) -> Action:
        trading = ("high",) if self.settings.trade_on == "high" else ("high", "medium")
        if confidence not in trading:
            return "HOLD"
        return "BUY" if prediction == 1 else "SELL"

    def on_features(self, features: Features) -> None:
        if features.feature_set != self.settings.feature_set:
            return
        if self._symbols and features.symbol not in self._symbols:
            return
        assert self.model is not None
        probability_up = self.model.predict_up(features.values)
        prediction = int(probability_up > 0.5)
        confidence = self.confidence(probability_up)
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
                action=self.action(prediction, confidence),
                model_version=self.model.label,
            )
        )
