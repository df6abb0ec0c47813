"""What catalog learns from other services: the availability it shows."""

from __future__ import annotations

from datetime import UTC, datetime

from mercato.contracts.events import StockUpdated
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.catalog.store import set_available


async def show_stock(event: StockUpdated, uow: UnitOfWork) -> None:
    """Keep the displayed availability. Idempotent (a repeat writes the same value) and
    tolerates reordering: a report older than the one kept (by event time) is ignored, by one
    conditional UPDATE, so of two reports handled at once by two replicas the newer stays. A
    report for an unknown or deleted product changes nothing."""
    at = uow.cause.time if uow.cause is not None else datetime.now(UTC)
    await set_available(uow.conn, event.productId, event.quantity, at)
