"""The component that turns `Bar` events into `Features` events, one stream per market."""

from __future__ import annotations

from pydantic import Field, field_validator

from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import Bar, Features
from ml.features import FEATURE_SETS, StreamingFeatures


class FeatureEngineConfig(StrictModel):
    feature_set: str = Field("seed", description="Feature set to compute: `seed` or `stationary`.")
    symbols: tuple[str, ...] = Field(
        (), description="Only these symbols (empty: every symbol seen on the bus)."
    )

    @field_validator("feature_set")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {value!r} (known: {', '.join(FEATURE_SETS)})")
        return value


class FeatureEngine(Component):
    """Computes streaming TA-Lib features per (symbol, timeframe) and publishes them."""

    Config = FeatureEngineConfig

    def __init__(
        self,
        name: str,
        settings: FeatureEngineConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self._streams: dict[tuple[str, str], StreamingFeatures] = {}
        self._symbols = frozenset(settings.symbols)

    async def on_start(self) -> None:
        self.subscribe(Bar, self.on_bar, name=f"{self.name}.on_bar")

    def on_bar(self, bar: Bar) -> None:
        if self._symbols and bar.symbol not in self._symbols:
            return
        key = (bar.symbol, bar.timeframe)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = StreamingFeatures(self.settings.feature_set)
        values = stream.update(bar)
        if values is None:
            return  # warming up
        self.bus.publish_nowait(
            Features(
                ts_event=bar.ts_event,
                ts_init=self.clock.timestamp_ns(),
                correlation_id=bar.correlation_id,
                symbol=bar.symbol,
                timeframe=bar.timeframe,
                feature_set=self.settings.feature_set,
                values=values,
            )
        )
