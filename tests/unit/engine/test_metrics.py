"""The engine core's metrics: the market's last-bar time, which the stale-data alert reads."""

from __future__ import annotations

from msgspec.structs import replace

from engine.bus import EventBus
from engine.market_view import BusMarketView
from engine.metrics import EngineMetrics
from tests.factories import bar

SERIES = "trade_engine_market_last_bar_timestamp_seconds"
SECOND = 1_000_000_000


def test_last_bar_timestamp_is_the_receive_time_of_each_symbols_latest_bar():
    bus = EventBus()
    market = BusMarketView(bus)
    metrics = EngineMetrics(bus, lambda: [], market)
    get = metrics.registry.get_sample_value
    assert f"{SERIES}{{" not in metrics.render().decode()  # no bar yet: absent, not 0

    # ts_init (received), not ts_event (the candle's time): a replay of old candles on
    # the live clock is fresh data, a live feed gone silent is not.
    bus.publish_nowait(bar(ts=1_700_000_000 * SECOND))
    bus.publish_nowait(replace(bar(ts=1), ts_init=1_700_003_600 * SECOND))
    bus.publish_nowait(bar(symbol="WBTC/USDC", ts=1_700_000_100 * SECOND))

    assert get(SERIES, {"symbol": "WETH/USDC"}) == 1_700_003_600
    assert get(SERIES, {"symbol": "WBTC/USDC"}) == 1_700_000_100
