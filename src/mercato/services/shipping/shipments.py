"""shipping's use cases in the caller's unit of work: ship, take back, deliver, fail.

The shipment rows are locked while a decision is made (PostgreSQL ``FOR UPDATE``; SQLite's
transactions hold the write lock from their start), so the carrier and a cancellation
deciding about the same shipment at once take turns; a hand-over and a cancellation of one
order take turns on the order (``store.take_turn``), since the shipment may not exist yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import structlog

from mercato.contracts.events import Address, Item
from mercato.platform.ids import new_id
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.shipping import domain, store
from mercato.services.shipping.domain import Decision, Kind, Shipment

log = structlog.get_logger(__name__)


class UnknownShipment(LookupError):
    pass


def now_utc() -> datetime:
    return datetime.now(UTC)


async def _keep(uow: UnitOfWork, decision: Decision, known: Iterable[Shipment]) -> None:
    """Write what the decision changed (``known``: the shipments it was made from, read from
    the database: updated; the others are new: inserted) and publish its events."""
    await store.keep(uow.conn, decision.shipments, {s.shipment_id for s in known})
    for event in decision.events:
        order_id = getattr(event, "orderId", None)
        uow.publish(event, subject=order_id, correlationid=order_id)
    for s in decision.shipments:
        log.info("shipment", shipment_id=s.shipment_id, kind=s.kind, status=s.status)


async def ship(
    uow: UnitOfWork,
    order_id: str,
    user_id: str | None,
    items: list[Item],
    address: Address | None,
) -> None:
    # Its turn first: a cancellation of the order handled at the same moment by another
    # replica would otherwise miss the shipment made here, and this the cancellation.
    await store.take_turn(uow.conn, order_id)
    delivery_id, cancelled = await store.before_shipping(uow.conn, order_id)
    existing = await store.get(uow.conn, delivery_id) if delivery_id is not None else None
    decision = domain.ship(
        new_id(),
        order_id,
        user_id,
        items,
        address,
        now_utc(),
        existing=existing,
        order_cancelled=cancelled,
    )
    await _keep(uow, decision, [existing] if existing is not None else [])


async def take_back(uow: UnitOfWork, order_id: str, previous_status: str | None) -> None:
    now = now_utc()
    await store.take_turn(uow.conn, order_id)
    await store.remember_cancelled(uow.conn, order_id, previous_status, now)
    found = await store.of_order(uow.conn, order_id, lock=True)
    delivery = next((s for s in found if s.kind is Kind.DELIVERY), None)
    back = next((s for s in found if s.kind is Kind.RETURN), None)
    decision = domain.order_cancelled(delivery, back, previous_status, new_id(), now)
    await _keep(uow, decision, found)


async def deliver(uow: UnitOfWork, shipment_id: str) -> Shipment:
    """``NotInTransit`` if it can no longer be delivered."""
    shipment = await store.get(uow.conn, shipment_id, lock=True)
    if shipment is None:
        raise UnknownShipment(shipment_id)
    decision = domain.deliver(shipment, now_utc())
    await _keep(uow, decision, [shipment])
    return decision.shipments[0] if decision.shipments else shipment


async def fail(uow: UnitOfWork, shipment_id: str, reason: str) -> Shipment:
    """``NotInTransit`` or ``ReturnsCannotFail`` if it cannot fail now."""
    shipment = await store.get(uow.conn, shipment_id, lock=True)
    if shipment is None:
        raise UnknownShipment(shipment_id)
    decision = domain.fail(shipment, reason, now_utc())
    await _keep(uow, decision, [shipment])
    return decision.shipments[0] if decision.shipments else shipment
