"""Events are immutable, slotted and round-trip through JSON as their own class."""

from __future__ import annotations

import pytest

from engine import events
from engine.events import Bar, Event, OrderFilled, from_json, to_json


def every_event_type() -> list[type[Event]]:
    return list(events.AnyEvent.__args__)  # type: ignore[attr-defined]


def test_every_concrete_event_type_is_in_the_decodable_union():
    defined = {
        cls
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
    }
    assert defined == set(every_event_type())


def test_events_are_immutable_and_slotted():
    bar = Bar(
        ts_event=1,
        ts_init=2,
        symbol="BTC/USDT",
        timeframe="1h",
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=10.0,
    )
    with pytest.raises(AttributeError):
        bar.close = 3.0  # type: ignore[misc]
    assert not hasattr(bar, "__dict__")


def test_round_trip_through_json_keeps_type_and_values():
    fill = OrderFilled(
        ts_event=10,
        ts_init=11,
        correlation_id="bar-42",
        seq=7,
        order_id="o-1",
        symbol="WETH/USDC",
        side="BUY",
        amount_in=10**18,
        amount_out=3_000 * 10**6,
        price=3000.0,
        gas_used=120_000,
        gas_cost_wei=10**15,
    )
    back = from_json(to_json(fill))
    assert type(back) is OrderFilled
    assert back == fill


@pytest.mark.parametrize("event_type", every_event_type(), ids=lambda c: c.__name__)
def test_every_event_carries_timestamps_correlation_and_sequence(event_type):
    fields = set(event_type.__struct_fields__)
    assert {"ts_event", "ts_init", "correlation_id", "seq"} <= fields
