"""Replays a candle file onto the bus as `Bar` events.

Under a :class:`~engine.clock.SimulatedClock` it runs as fast as the CPU allows: the
replay owns simulated time and advances it to each bar's close before publishing it,
so timers fire as they would have. Under a :class:`~engine.clock.LiveClock`, ``speed``
sets how many seconds of market time pass per wall-clock second (3600: an hour-bar a
second), for demos. The file is validated completely before the first bar is sent
(see :func:`engine.candles.read_candles`); gaps are logged and replayed as
they are, never filled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import Field, field_validator

from engine.candles import (
    GapReport,
    iter_rows,
    make_bar,
    read_candles,
    resolve_data_path,
    utc_timestamp,
)
from engine.clock import SimulatedClock
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.config_paths import DATA_FILE

SAMPLES_DIR = Path(__file__).with_name("samples")
"""The bundled real candles; registered as the data root ``samples`` (``samples/NAME``)."""


class ReplayConfig(StrictModel):
    path: Annotated[str, DATA_FILE] = Field(
        description="Candle file (.csv, .csv.gz, .parquet); `samples/NAME` means the bundled "
        "sample data (adapters/replay/samples)."
    )
    symbol: str = Field(min_length=1, description="Symbol the bars are published as.")
    timeframe: str | None = Field(
        None,
        description="Candle interval (e.g. `1h`); checked against the file, inferred if unset.",
    )
    speed: float | None = Field(
        None,
        gt=0,
        description="Live clock only: market seconds per wall second; unset replays as fast "
        "as possible.",
    )
    start: str | None = Field(None, description="First candle open time to replay (ISO-8601).")
    end: str | None = Field(None, description="Last candle open time to replay (ISO-8601).")

    @field_validator("start", "end")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                utc_timestamp(value)
            except ValueError:
                raise ValueError(f"not an ISO-8601 time: {value!r}") from None
        return value


class ReplayMarketData(Component):
    """Publishes every candle of a file as a `Bar`, in order, then reports it finished.

    The file is loaded and validated in ``on_start``; publishing begins once the whole
    component graph is running (``on_all_started``).
    """

    Config = ReplayConfig

    def __init__(
        self,
        name: str,
        settings: ReplayConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.path = resolve_data_path(settings.path)
        self.published = 0
        self.gaps: GapReport | None = None
        self.finished = asyncio.Event()
        self._frame: pd.DataFrame | None = None
        self._timeframe = settings.timeframe or ""
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        frame, self._timeframe, self.gaps = await asyncio.to_thread(
            read_candles, self.path, self.settings.timeframe
        )
        self._frame = _between(frame, self.settings.start, self.settings.end)
        self.log.info(
            "replay.loaded",
            path=str(self.path),
            candles=len(self._frame),
            timeframe=self._timeframe,
            gaps=self.gaps.gaps,
            missing_candles=self.gaps.missing_candles,
            largest_gap=self.gaps.largest_missing,
        )

    async def on_all_started(self) -> None:
        assert self._frame is not None
        clock = self.clock
        if isinstance(clock, SimulatedClock) and len(self._frame):
            first_open = int(self._frame["timestamp"].iloc[0].value)
            if clock.timestamp_ns() < first_open:
                # Simulated time starts where the data starts, not at the epoch.
                clock.jump_to(first_open)
        self._task = asyncio.create_task(self._run(), name=f"replay:{self.name}")

    async def on_stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        assert self._frame is not None
        clock = self.clock
        speed = None if isinstance(clock, SimulatedClock) else self.settings.speed
        symbol = self.settings.symbol
        wall_start = clock.timestamp_ns()
        first_close: int | None = None
        try:
            for row in iter_rows(self._frame, self._timeframe):
                close_ns = row[0]
                if speed is None:
                    # Simulated time jumps to the close; live time does not wait at all.
                    await clock.sleep_until(close_ns)
                else:
                    first_close = close_ns if first_close is None else first_close
                    await clock.sleep_until(wall_start + int((close_ns - first_close) / speed))
                bar = make_bar(row, symbol, self._timeframe, clock.timestamp_ns())
                await self.bus.publish(bar)
                self.published += 1
        except Exception as exc:
            self.fault(f"replay failed after {self.published} bars: {exc}")
            raise
        finally:
            self.finished.set()
        self.log.info("replay.finished", bars=self.published, path=str(self.path))


def _between(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    if start:
        mask &= frame["timestamp"] >= utc_timestamp(start)
    if end:
        mask &= frame["timestamp"] <= utc_timestamp(end)
    return frame.loc[mask].reset_index(drop=True)
