"""What the executor knows about each order it handles, and what the journal keeps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from adapters.evm.sender import SentTx


class OrderStatus(StrEnum):
    QUOTING = "QUOTING"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    FILLED = "FILLED"
    FAILED = "FAILED"


TERMINAL = (OrderStatus.FILLED, OrderStatus.FAILED)


@dataclass(frozen=True, slots=True)
class SubmittedRecord:
    """What the journal keeps of an ``OrderSubmitted``: enough to reconcile."""

    order_id: str
    tx_hash: str
    nonce: int


@dataclass
class TrackedOrder:
    order_id: str
    correlation_id: str = ""
    status: OrderStatus = OrderStatus.QUOTING
    nonce: int | None = None
    sent: list[SentTx] = field(default_factory=list)
    tx_hashes: list[str] = field(default_factory=list)
    reason: str = ""
    can_replace: bool = True
    pending_since: float | None = None  # time.monotonic() when it became PENDING

    def __post_init__(self) -> None:
        if self.status is OrderStatus.PENDING:
            self.mark_pending()

    def mark_pending(self) -> None:
        """PENDING from now (the first time only): its age is what an alert watches."""
        self.status = OrderStatus.PENDING
        if self.pending_since is None:
            self.pending_since = time.monotonic()
