"""The checks an ``OrderRequest`` passes before an executor quotes it, paper or live."""

from __future__ import annotations

from typing import NamedTuple

from engine.amm import BPS
from engine.events import OrderRequest
from engine.reasons import OrderFailReason


class OrderProblem(NamedTuple):
    """Why an order cannot be sent at all: the ``OrderFailed`` reason and detail."""

    reason: OrderFailReason
    detail: str


def order_problem(request: OrderRequest, symbol: str) -> OrderProblem | None:
    """What is wrong with ``request`` for an executor trading ``symbol``, or None."""
    if request.symbol != symbol:
        return OrderProblem(OrderFailReason.UNKNOWN_SYMBOL, f"executor trades {symbol}")
    if request.amount_in <= 0:
        return OrderProblem(OrderFailReason.INVALID_AMOUNT, f"amount_in={request.amount_in}")
    if not 0 <= request.max_slippage_bps < BPS:
        return OrderProblem(OrderFailReason.INVALID_SLIPPAGE, str(request.max_slippage_bps))
    return None
