"""A dry run's paper fill, priced by the real router on the real pool.

For one order: quote with the router's ``getAmountsOut`` (the pool as it is now), set
the minimum output as a live swap would, build that swap's calldata and ask the node to
estimate it from the configured account. The fill is the quote to the unit; its gas
is the estimate at the current base fee plus tip. Nothing is signed or sent.

The estimate runs the router's ``transferFrom``, so it needs an account holding the
tokens and allowing the router to spend them. Without one (no ``account``, an empty or
unapproved one: the usual case when paper trading) the fill still happens, priced the
same, with ``gas_assumed`` gas and a ``note`` saying why; any other revert (an expired
deadline, a pool that cannot pay) fails the order as the live swap would fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.evm.reverts import reason_code
from adapters.evm.rpc import ALLOWANCE, BALANCE_OF, JsonRpc, RevertError
from engine.amm import min_amount_out
from engine.events import OrderRequest
from engine.reasons import OrderFailReason

SwapData = Callable[[int, int, list[str]], str]
"""``(amount_in, min_out, path) -> calldata`` of the swap a live executor would send."""


@dataclass(frozen=True, slots=True)
class DryRunQuote:
    """What a dry run fills: ``amount_out`` is ``getAmountsOut`` to the unit."""

    amount_out: int
    min_amount_out: int
    gas_used: int
    note: str = ""


class DryRunRejected(Exception):
    """The swap would fail live too: ``reason`` is the code its order fails with."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class DryRunQuoter:
    """Quotes and estimates swaps for one router and (optionally) one account."""

    def __init__(self, rpc: JsonRpc, router: str, account: str | None, gas_assumed: int) -> None:
        self.rpc = rpc
        self.router = router
        self.account = account
        self.gas_assumed = gas_assumed

    async def quote(
        self, request: OrderRequest, path: list[str], swap_data: SwapData
    ) -> DryRunQuote:
        """The paper fill of ``request``; raises :class:`DryRunRejected`, or the RPC's
        errors (``RevertError`` from the quote itself, connection errors)."""
        amounts = await self.rpc.get_amounts_out(self.router, request.amount_in, path)
        amount_out = amounts[-1]
        floor = request.min_amount_out or min_amount_out(amount_out, request.max_slippage_bps)
        if amount_out < floor:
            reason = OrderFailReason.INSUFFICIENT_OUTPUT_AMOUNT
            raise DryRunRejected(
                reason, f"UniswapV2Router: {reason} (out {amount_out} < minimum {floor})"
            )
        if self.account is None:
            note = f"dry run without an account: gas not estimated, {self.gas_assumed} assumed"
            return DryRunQuote(amount_out, floor, self.gas_assumed, note)
        data = swap_data(request.amount_in, floor, path)
        try:
            gas = await self.rpc.estimate_gas(self.account, self.router, data)
        except RevertError as exc:
            why = await self._why_not_estimated(path[0], request.amount_in, exc.message)
            if why is None:
                raise DryRunRejected(reason_code(exc.message), exc.message) from None
            note = f"dry run: gas not estimated ({why}), {self.gas_assumed} assumed"
            return DryRunQuote(amount_out, floor, self.gas_assumed, note)
        return DryRunQuote(amount_out, floor, gas)

    async def _why_not_estimated(self, token: str, amount: int, message: str) -> str | None:
        """Why the account cannot run this swap (balance, allowance), or None when the
        revert is the swap's own (it would fail live as well)."""
        assert self.account is not None
        if reason_code(message) != OrderFailReason.TRANSFER_FROM_FAILED:
            return None
        balance = await self.rpc.erc20_uint(token, BALANCE_OF, self.account)
        if balance < amount:
            return f"{OrderFailReason.INSUFFICIENT_BALANCE}: balance {balance} < amount_in {amount}"
        allowance = await self.rpc.erc20_uint(token, ALLOWANCE, self.account, self.router)
        if allowance < amount:
            return (
                f"{OrderFailReason.INSUFFICIENT_ALLOWANCE}: router allowance {allowance} "
                f"< amount_in {amount}"
            )
        return f"{OrderFailReason.TRANSFER_FROM_FAILED}: {message}"
