"""Events for tests, built from what a test is about and defaults for the rest.

Each factory sets both ``ts_event`` and ``ts_init`` to ``ts`` and fills in the fields
the event requires with the defaults its docstring names; any field of the event may be
given as a keyword instead. Fields the event itself defaults (``correlation_id``,
``seq``, fees, slippage...) keep the event's defaults unless given.
"""

from __future__ import annotations

from typing import Any

from engine.events import Action, Bar, Heartbeat, OrderFilled, OrderRequest, Side, Signal


def heartbeat(count: int, *, ts: int | None = None) -> Heartbeat:
    """The ``count``-th heartbeat, at time ``count`` unless ``ts`` is given."""
    ts = count if ts is None else ts
    return Heartbeat(ts_event=ts, ts_init=ts, count=count)


def bar(close: float = 1.0, *, ts: int = 1, **fields: Any) -> Bar:
    """A flat hourly WETH/USDC candle (open, high, low and close all ``close``), volume 1."""
    fields = {"symbol": "WETH/USDC", "timeframe": "1h", "volume": 1.0, **fields}
    return Bar(ts_event=ts, ts_init=ts, open=close, high=close, low=close, close=close, **fields)


def signal(action: Action = "BUY", *, ts: int = 1, **fields: Any) -> Signal:
    """Strategy ``ml``'s signal on WETH/USDC: prediction 1, 0.9 up, high confidence."""
    fields = {
        "strategy_id": "ml",
        "symbol": "WETH/USDC",
        "prediction": 1,
        "probability_up": 0.9,
        "confidence": "high",
        **fields,
    }
    return Signal(ts_event=ts, ts_init=ts, action=action, **fields)


def order(side: Side, amount_in: int, *, ts: int = 1, **fields: Any) -> OrderRequest:
    """Order ``o1`` of strategy ``s`` on WETH/USDC, spending ``amount_in`` base units."""
    fields = {"order_id": "o1", "strategy_id": "s", "symbol": "WETH/USDC", **fields}
    return OrderRequest(ts_event=ts, ts_init=ts, side=side, amount_in=amount_in, **fields)


def fill(
    side: Side, amount_in: int, amount_out: int, price: float, *, ts: int = 1, **fields: Any
) -> OrderFilled:
    """Order ``o1`` on WETH/USDC filled: base units in and out, ``price`` in quote per base."""
    fields = {"order_id": "o1", "symbol": "WETH/USDC", **fields}
    amounts = {"amount_in": amount_in, "amount_out": amount_out, "price": price}
    return OrderFilled(ts_event=ts, ts_init=ts, side=side, **amounts, **fields)
