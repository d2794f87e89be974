"""What the journal holds of a market's swaps, for an executor restarting after a crash."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from adapters.uniswap_v2.orders import SubmittedRecord
from engine.events import Event, OrderSubmitted
from engine.journal import JournalReader


def journal_history(path: Path, symbol: str) -> dict[str, list[Event]]:
    """The journalled ``OrderSubmitted``/``OrderFilled``/``OrderFailed`` events of
    ``symbol``'s orders, by order id, in journal order: every order an earlier run
    sent or settled (failed before sending included), which a resumed run must not
    execute again."""
    if not path.exists():
        return {}
    reader = JournalReader.open(path)
    try:
        ours = {
            row.event().order_id  # type: ignore[attr-defined]
            for row in reader.rows(types=("OrderRequest",))
            if row.event().symbol == symbol  # type: ignore[attr-defined]
        }
        history: dict[str, list[Event]] = {}
        for row in reader.rows(types=("OrderSubmitted", "OrderFilled", "OrderFailed")):
            event = row.event()
            order_id = event.order_id  # type: ignore[attr-defined]
            if order_id in ours:
                history.setdefault(order_id, []).append(event)
        return history
    finally:
        reader.conn.close()


def submitted_records(events: Iterable[Event]) -> list[SubmittedRecord]:
    return [
        SubmittedRecord(e.order_id, e.venue_order_id, e.nonce)
        for e in events
        if isinstance(e, OrderSubmitted) and e.nonce is not None
    ]
