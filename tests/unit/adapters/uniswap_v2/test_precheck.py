"""The order checks both executors run before quoting."""

from __future__ import annotations

from adapters.uniswap_v2.precheck import OrderProblem, order_problem
from engine.events import OrderRequest
from engine.reasons import OrderFailReason
from tests.paper_orders import order


def request(symbol: str = "WETH/USDC", amount_in: int = 10, slippage: int = 50) -> OrderRequest:
    return order("BUY", amount_in, max_slippage_bps=slippage, symbol=symbol)


def test_a_valid_order_has_no_problem():
    assert order_problem(request(), "WETH/USDC") is None


def test_each_invalid_field_is_named_with_its_reason_code():
    assert order_problem(request(symbol="WBTC/USDC"), "WETH/USDC") == OrderProblem(
        OrderFailReason.UNKNOWN_SYMBOL, "executor trades WETH/USDC"
    )
    assert order_problem(request(amount_in=0), "WETH/USDC") == OrderProblem(
        OrderFailReason.INVALID_AMOUNT, "amount_in=0"
    )
    assert order_problem(request(slippage=10_000), "WETH/USDC") == OrderProblem(
        OrderFailReason.INVALID_SLIPPAGE, "10000"
    )
    assert order_problem(request(slippage=-1), "WETH/USDC") == OrderProblem(
        OrderFailReason.INVALID_SLIPPAGE, "-1"
    )
