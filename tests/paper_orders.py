"""An ``OrderRequest`` for the paper executor's market and the order checks."""

from __future__ import annotations

from typing import Any

from engine.events import OrderRequest, Side
from tests import factories


def order(side: Side, amount_in: int, order_id: str = "o1", **fields: Any) -> OrderRequest:
    """An order whose correlation id names it: ``corr-<order_id>``."""
    fields.update(order_id=order_id, correlation_id=f"corr-{order_id}")
    return factories.order(side, amount_in, **fields)
