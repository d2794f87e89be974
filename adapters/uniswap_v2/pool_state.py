"""A real pool's reserves and the chain's gas price, kept current in the market view.

The risk manager checks price impact, slippage against the last bar and the gas price
cap on what the market view holds. On the demo's local chain the ``local_chain``
component reports its pool; on any other chain the executor runs this reporter: it reads
``getReserves`` and the base fee at start and every ``interval`` seconds after, so the
risk manager decides on reserves at most that old.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.evm.fees import FeeOracle
from adapters.evm.rpc import JsonRpc, RpcError, selector
from adapters.evm.sender import AMBIGUOUS_SEND_ERRORS
from adapters.uniswap_v2.fills import words
from engine.amm import get_amount_out
from engine.market_view import BusMarketView

GET_RESERVES = "0x" + selector("getReserves()").hex()


class PoolReporter:
    """Reports one pair's reserves (as BASE/QUOTE) and the gas price to the market view."""

    def __init__(
        self,
        rpc: JsonRpc,
        pair: str,
        base_is_token0: bool,
        symbol: str,
        market: BusMarketView,
        fees: FeeOracle,
        log: Any,
    ) -> None:
        self.rpc = rpc
        self.pair = pair
        self.base_is_token0 = base_is_token0
        self.symbol = symbol
        self.market = market
        self.fees = fees
        self.log = log
        self.failures = 0

    async def refresh(self) -> None:
        reserve0, reserve1, _ = words(await self.rpc.call(self.pair, GET_RESERVES))[:3]
        base, quote = (reserve0, reserve1) if self.base_is_token0 else (reserve1, reserve0)
        self.market.set_pool(self.symbol, base, quote, get_amount_out)
        # Read here, not through the fee oracle: its cached block also dates the swaps'
        # deadlines (deadline_clock: chain), which this reporter must not make stale.
        base_fee, _ = await self.rpc.latest_base_fee_and_time()
        self.market.set_gas_price_wei(base_fee + self.fees.priority_fee_wei)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except (*AMBIGUOUS_SEND_ERRORS, RpcError) as exc:
                self.failures += 1  # the chain probe reports an unreachable node
                self.log.debug("pool.refresh_failed", error=type(exc).__name__)
