"""A component that publishes a Heartbeat event on a wall-clock timer.

It shows, on the bus and in metrics, that the process and its loop are turning. That
is a fact about the process, so the timer runs on wall time even when the engine's
clock is simulated: a replay of two years must not emit a beat per simulated second.
"""

from __future__ import annotations

from pydantic import Field

from engine.clock import NANOS_PER_SECOND, LiveClock, TimerFired
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import Heartbeat


class HeartbeatConfig(StrictModel):
    interval_seconds: float = Field(1.0, gt=0, le=3600, description="Time between beats.")


class HeartbeatSource(Component):
    """Publishes a `Heartbeat` event every `interval_seconds` of wall time."""

    Config = HeartbeatConfig

    def __init__(
        self,
        name: str,
        settings: HeartbeatConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.interval_ns = int(settings.interval_seconds * NANOS_PER_SECOND)
        self.count = 0
        self._wall = LiveClock()

    async def on_start(self) -> None:
        self._wall.set_timer(self._timer_name, self.interval_ns, self._beat)

    async def on_stop(self) -> None:
        self._wall.cancel_timer(self._timer_name)

    @property
    def _timer_name(self) -> str:
        return f"{self.name}.beat"

    def _beat(self, fired: TimerFired) -> None:
        self.count += 1
        self.bus.publish_nowait(
            Heartbeat(ts_event=fired.scheduled_ns, ts_init=fired.fired_ns, count=self.count)
        )
