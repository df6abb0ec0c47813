"""shipping's event handlers: ship what an order hands over, take back what a cancelled order
had sent out.

Ordering: neither needs the events of one order in order. A cancellation is remembered, so a
hand-over that arrives after it ships nothing; a cancellation that arrives after the shipment
decides from the shipment's own status as well as the order's previous status (see
``domain``). Idempotent: one delivery and one return per order at most, whatever is
redelivered (the inbox, plus a unique key on order and kind).
"""

from __future__ import annotations

from mercato.contracts.events import OrderCancelled, OrderStatusChanged
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.shipping import shipments


async def ship_handed_over_order(event: OrderStatusChanged, uow: UnitOfWork) -> None:
    """The order is paid and reserved (status RESERVED): send it → ShipmentCreated."""
    await shipments.ship(uow, event.orderId, event.userId, event.items or [], event.shippingAddress)


async def take_back_cancelled_order(event: OrderCancelled, uow: UnitOfWork) -> None:
    """Bring the goods back (ReturnShipmentCreated) or stop the shipment before pick-up."""
    await shipments.take_back(uow, event.orderId, event.previousStatus)
