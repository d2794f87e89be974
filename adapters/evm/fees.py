"""EIP-1559 fees with a cap: ``maxFee = min(cap, 2 * baseFee + tip)``.

The base fee is read from the latest block at most once per ``ttl_seconds`` and
shared by all orders in flight; that block's timestamp gives the chain's clock. A
base fee at or above the cap refuses the order rather than sending a transaction that
could sit unmined.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

GWEI = 10**9


class FeeCapExceededError(RuntimeError):
    """The network's base fee is at or above the configured cap."""


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class FeeOracle:
    def __init__(
        self,
        fetch_latest: Callable[[], Awaitable[tuple[int, int]]],
        *,
        priority_fee_wei: int,
        max_fee_cap_wei: int,
        ttl_seconds: float = 1.0,
    ) -> None:
        self._fetch = fetch_latest
        self.priority_fee_wei = priority_fee_wei
        self.cap_wei = max_fee_cap_wei
        self.ttl_seconds = ttl_seconds
        self._base_fee = 0
        self._block_time = 0
        self._fetched_at = float("-inf")

    async def base_fee(self) -> int:
        now = time.monotonic()
        if now - self._fetched_at > self.ttl_seconds:
            self._base_fee, self._block_time = await self._fetch()
            self._fetched_at = now
        return self._base_fee

    def chain_time(self) -> float:
        """The chain's clock: the last block read plus the time since (for deadlines)."""
        return self._block_time + (time.monotonic() - self._fetched_at)

    async def current(self) -> Fees:
        base = await self.base_fee()
        if base >= self.cap_wei:
            raise FeeCapExceededError(
                f"base fee {base / GWEI:.3f} gwei >= cap {self.cap_wei / GWEI:.3f} gwei"
            )
        tip = min(self.priority_fee_wei, self.cap_wei - base)
        return Fees(min(self.cap_wei, 2 * base + tip), tip)

    def bumped(self, fees: Fees, factor: float) -> Fees | None:
        """Fees raised by ``factor`` (nodes want >= 10%) for a replacement; None at the cap."""
        max_fee = int(fees.max_fee_per_gas * factor) + 1
        tip = int(fees.max_priority_fee_per_gas * factor) + 1
        if max_fee > self.cap_wei:
            return None
        return Fees(max_fee, min(tip, max_fee))
