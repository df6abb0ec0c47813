"""order's event handlers: checkouts become orders; the participants' news moves the saga.

Ordering: none of them needs the events of one order in order. The saga records each
participant's fact once and moves forward only, so duplicates, late and reordered events
change nothing twice and never move an order back (see ``domain``). The inbox makes a
redelivered event a no-op; a checkout whose order id is already known is skipped as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from mercato.contracts.events import (
    CartCheckedOut,
    Payload,
    PaymentCancelled,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from mercato.platform.ids import new_id
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.order import orders, store
from mercato.services.order.orders import OrderExists
from mercato.services.order.pricing import current_prices

log = structlog.get_logger(__name__)

ParticipantNews = (
    PaymentInitiated
    | PaymentCompleted
    | PaymentFailed
    | PaymentCancelled
    | PaymentRefunded
    | StockReserved
    | StockReservationFailed
    | StockReleased
    | ShipmentCreated
    | ShipmentDelivered
    | ShipmentFailed
)


async def place_checked_out_order(event: CartCheckedOut, uow: UnitOfWork) -> None:
    """A checked-out cart becomes an order with the id the cart gave it.

    Idempotent: an order id already known is skipped (a cart that published its checkout
    twice). A checkout without an order id (an older cart) takes the event's id, so a redelivery
    still maps to one order. Items without a price are priced by the catalog.
    """
    order_id = event.orderId or (uow.cause.id if uow.cause is not None else new_id())
    if all(item.price is not None for item in event.items):
        lines = [(i.productId, i.quantity, i.price) for i in event.items if i.price is not None]
        currency = event.currency
    elif await store.load(uow.conn, order_id) is not None:  # not worth asking the catalog
        log.info("checkout already placed", order_id=order_id)
        return
    else:
        priced = await current_prices().price([(i.productId, i.quantity) for i in event.items])
        lines, currency = priced.lines, priced.currency
    try:
        await orders.place_order(
            uow,
            order_id,
            event.userId,
            lines,
            currency=currency,
            payment=event.payment,
            shipping_address=event.shippingAddress,
            cart_id=event.cartId,
        )
    except OrderExists:
        log.info("checkout already placed", order_id=order_id)


async def advance_saga(event: ParticipantNews, uow: UnitOfWork) -> None:
    """Payment, inventory or shipping reported on an order: the saga takes it from there."""
    if await orders.apply(uow, event.orderId, event) is None:
        kind = type(event).__name__
        log.warning("news about an unknown order", order_id=event.orderId, type=kind)


async def lock_orders(uow: UnitOfWork, payloads: Sequence[Payload]) -> None:
    """The batch's participant news, read with their orders locked in one statement."""
    await orders.lock_all(uow, [p.orderId for p in payloads if isinstance(p, ParticipantNews)])
