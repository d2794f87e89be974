"""ERC-20 approvals for the router: granted once per token, then tracked in memory.

The first order spending a token checks its allowance and, if short, approves the
router for the maximum amount and waits for that to be mined (concurrent orders wait
on the same lock, so only one approval is sent). A swap that later fails for lack of
allowance calls :meth:`Approvals.forget`, so the next order approves again.
"""

from __future__ import annotations

import asyncio

from adapters.evm.fees import FeeOracle
from adapters.evm.rpc import ALLOWANCE, APPROVE, BALANCE_OF, JsonRpc, calldata
from adapters.evm.sender import TransactionSender
from engine.reasons import OrderFailReason

MAX_UINT256 = 2**256 - 1


class ApprovalError(RuntimeError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Approvals:
    def __init__(
        self,
        rpc: JsonRpc,
        sender: TransactionSender,
        fees: FeeOracle,
        spender: str,
        *,
        gas_padding: float,
        timeout_seconds: float,
    ) -> None:
        self.rpc = rpc
        self.sender = sender
        self.fees = fees
        self.owner = sender.signer.address
        self.spender = spender
        self.gas_padding = gas_padding
        self.timeout_seconds = timeout_seconds
        self.approved: set[str] = set()
        self.sent = 0
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, token: str) -> None:
        self.approved.discard(token)

    async def allowance(self, token: str) -> int:
        return await self.rpc.erc20_uint(token, ALLOWANCE, self.owner, self.spender)

    async def balance(self, token: str) -> int:
        return await self.rpc.erc20_uint(token, BALANCE_OF, self.owner)

    async def ensure(self, token: str) -> None:
        """Return once the router may spend ``token`` (approving it if needed)."""
        if token in self.approved:
            return
        lock = self._locks.setdefault(token, asyncio.Lock())
        async with lock:
            if token in self.approved:
                return
            if await self.allowance(token) < MAX_UINT256 // 2:
                await self._approve(token)
            self.approved.add(token)

    async def _approve(self, token: str) -> None:
        data = calldata(APPROVE, ["address", "uint256"], [self.spender, MAX_UINT256])
        gas = await self.rpc.estimate_gas(self.owner, token, data)
        fees = await self.fees.current()
        sent = await self.sender.send(token, data, int(gas * self.gas_padding), fees)
        self.sent += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):  # not wait_for: see receipts.py
                receipt = await asyncio.shield(self.sender.receipts.watch(sent.tx_hash))
        except TimeoutError:
            raise ApprovalError(
                OrderFailReason.APPROVAL_PENDING,
                f"approval {sent.tx_hash} not mined in {self.timeout_seconds}s",
            ) from None
        if receipt.status != 1:
            raise ApprovalError(
                OrderFailReason.APPROVAL_FAILED, f"approval {sent.tx_hash} reverted"
            )
        self.sender.nonces.mined(sent.nonce)
