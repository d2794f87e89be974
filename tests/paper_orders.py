"""An ``OrderRequest`` factory for the paper executor's market and the order checks."""

from __future__ import annotations

from engine.events import OrderRequest


def order(
    side: str,
    amount_in: int,
    order_id: str = "o1",
    min_out: int = 0,
    slippage: int = 50,
    symbol: str = "WETH/USDC",
) -> OrderRequest:
    return OrderRequest(
        ts_event=1,
        ts_init=1,
        correlation_id=f"corr-{order_id}",
        order_id=order_id,
        strategy_id="s",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        amount_in=amount_in,
        max_slippage_bps=slippage,
        min_amount_out=min_out,
    )
