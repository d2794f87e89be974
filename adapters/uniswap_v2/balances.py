"""The trading account's balances on chain, for the portfolio: its one source of them.

A live executor publishes, for its market's two tokens:

* ``StartingBalances`` once, at start: read from the chain on a fresh journal, or the
  journalled one on a resumed run, so the portfolio re-derives the book it had (its
  fills are re-produced on top of the same start);
* ``BalancesObserved`` after the journal has caught up (``start``), every
  ``reconcile_seconds`` (``periodic``) and after each fill (``fill``), which the
  portfolio compares with its book.

A reading is published only if no swap of the account was in flight from before it
began until after it ended (none signed and unsettled, none signed or settled
meanwhile): a swap mined but whose fill is not yet published would otherwise look like
tokens gone missing. A reading skipped for that is tried again a second later. All
balances of a reading are from one block (:func:`adapters.evm.balances.read_balances`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.evm.balances import AccountBalances, read_balances
from adapters.evm.rpc import JsonRpc, RpcError
from adapters.evm.sender import AMBIGUOUS_SEND_ERRORS
from engine.bus import EventBus
from engine.clock import Clock
from engine.events import BalancesObserved, StartingBalances
from engine.journal import JournalReader

RETRY_SECONDS = 1.0


def starting_balances_id(account: str, symbol: str) -> str:
    """The correlation id of an account's ``StartingBalances`` for one market: the same
    on every run, so a resumed journal recognises it."""
    return f"balances|{account.lower()}|{symbol}"


def journalled_starting_balances(path: Path, correlation_id: str) -> StartingBalances | None:
    """The first ``StartingBalances`` journalled under ``correlation_id`` at ``path``."""
    if not path.exists():
        return None
    reader = JournalReader.open(path)
    try:
        for row in reader.rows(types=("StartingBalances",)):
            if row.correlation_id == correlation_id:
                event = row.event()
                return event if isinstance(event, StartingBalances) else None
        return None
    finally:
        reader.conn.close()


class AccountBalanceSource:
    """Reads one account's ETH and token balances and publishes them (see the module)."""

    def __init__(
        self,
        rpc: JsonRpc,
        account: str,
        symbol: str,
        tokens: dict[str, str],
        bus: EventBus,
        clock: Clock,
        log: Any,
        *,
        in_flight: Callable[[], bool],
        activity: Callable[[], int],
    ) -> None:
        self.rpc = rpc
        self.account = account
        self.tokens = tokens  # symbol → ERC-20 address
        self.bus = bus
        self.clock = clock
        self.log = log
        self.correlation_id = starting_balances_id(account, symbol)
        self._in_flight = in_flight
        self._activity = activity
        self._wake = asyncio.Event()
        self.skipped = 0

    async def read(self) -> AccountBalances:
        return await read_balances(self.rpc, self.account, self.tokens)

    async def publish_starting(self, journals: list[Path]) -> tuple[StartingBalances, bool]:
        """Publish the journalled starting balances (a resumed run: True) or the chain's
        now (False)."""
        for path in journals:
            found = await asyncio.to_thread(journalled_starting_balances, path, self.correlation_id)
            if found is not None:
                event = StartingBalances(
                    ts_event=found.ts_event,
                    ts_init=self.clock.timestamp_ns(),
                    correlation_id=found.correlation_id,
                    account=found.account,
                    block=found.block,
                    balances=found.balances,
                    eth_wei=found.eth_wei,
                )
                self.log.info(
                    "balances.starting_from_journal", block=found.block, journal=str(path)
                )
                await self.bus.publish(event)
                return event, True
        event = StartingBalances(**self._fields(await self.read()))
        await self.bus.publish(event)
        return event, False

    def _fields(self, reading: AccountBalances) -> dict[str, Any]:
        """What a balances event says of one reading, stamped now."""
        now = self.clock.timestamp_ns()
        return {
            "ts_event": now,
            "ts_init": now,
            "correlation_id": self.correlation_id,
            "account": self.account,
            "block": reading.block,
            "balances": reading.tokens,
            "eth_wei": reading.eth_wei,
        }

    def wake(self) -> None:
        """Read again soon (a fill was published)."""
        self._wake.set()

    async def observe(self, reason: str) -> BalancesObserved | None:
        """Read and publish, or None if a swap was in flight meanwhile (or the node did
        not answer): the caller tries again."""
        before = self._activity()
        if self._in_flight():
            return None
        try:
            reading = await self.read()
        except (*AMBIGUOUS_SEND_ERRORS, RpcError) as exc:
            self.log.info("balances.read_failed", error=type(exc).__name__)
            return None
        if self._in_flight() or self._activity() != before:
            return None
        event = BalancesObserved(**self._fields(reading), reason=reason)
        await self.bus.publish(event)
        return event

    async def run(self, interval: float, caught_up: asyncio.Event | None, resumed: bool) -> None:
        """Observe after the catch-up (if ``resumed``), after fills and every ``interval``
        seconds (0: only after fills)."""
        if caught_up is not None:
            await caught_up.wait()
        reason = "start" if resumed else ""
        while True:
            if reason and await self.observe(reason) is None:
                self.skipped += 1
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                async with asyncio.timeout(interval or None):
                    await self._wake.wait()
                reason = "fill"
            except TimeoutError:
                reason = "periodic"
            self._wake.clear()
