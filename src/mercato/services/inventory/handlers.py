"""What inventory does on other services' events.

Every handler is idempotent: the inbox drops a redelivered event, and the reservation row
(primary key = order id) lets each order be reserved, released, deducted or returned once,
whatever arrives twice under another event id. Each step is a conditional write of that row
(``store.claim``, ``store.move``) and a handler acts only when its write moved the row, so
two replicas handling two events of one order at the same moment never both act.
"""

from __future__ import annotations

import structlog

from mercato.contracts.events import (
    Item,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    PaymentFailed,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ReturnShipmentReceived,
    ShortItem,
    StockDeducted,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.inventory import store
from mercato.services.inventory.domain import (
    AWAIT_RETURN,
    DEDUCT,
    RELEASE,
    RETURN_DEDUCTED,
    RETURN_HELD,
    SHORT,
    Movement,
    merge_lines,
)

log = structlog.get_logger(__name__)


def _items(lines: list[tuple[str, int]]) -> list[Item]:
    return [Item(productId=p, quantity=q) for p, q in lines]


async def stock_product(event: ProductCreated, uow: UnitOfWork) -> None:
    """A new product comes with its stock. Idempotent: a repeat (even under another event id,
    after orders have reserved some) changes nothing. Tolerates reordering with
    ProductUpdated: whichever came first created the row, a later create leaves it alone
    (``store.add_product``: one conditional insert, also when both arrive at once)."""
    if await store.add_product(uow.conn, event.productId, event.quantity):
        await store.record(uow.conn, Movement.STOCKED, [(event.productId, event.quantity)])
        await store.announce(uow, event.productId)


async def set_product_stock(event: ProductUpdated, uow: UnitOfWork) -> None:
    """``quantity``, when present, sets what is free to sell (held reservations stay held),
    creating the product's stock if ProductCreated has not come yet (one upsert). Idempotent;
    an update without ``quantity`` changes nothing here."""
    if event.quantity is None:
        return
    await store.put_stock(uow.conn, event.productId, event.quantity)
    await store.record(uow.conn, Movement.SET, [(event.productId, event.quantity)])
    await store.announce(uow, event.productId)


async def retire_product(event: ProductDeleted, uow: UnitOfWork) -> None:
    """A deleted product can no longer be reserved; reservations already held stay and are
    released or deducted as usual. Idempotent."""
    if await store.retire(uow.conn, event.productId):
        await store.record(uow.conn, Movement.RETIRED, [(event.productId, 0)])
        await store.announce(uow, event.productId)


async def reserve_stock(event: OrderCreated, uow: UnitOfWork) -> None:
    """Reserve every item of the order, or none → StockReserved / StockReservationFailed.

    Idempotent: the reservation row keyed by order id is written once (``store.claim``), so a
    second OrderCreated for the same order reserves nothing more. Tolerates reordering: if the
    order's OrderCancelled came first it left a CANCELLED tombstone, and this late OrderCreated
    reserves nothing.
    """
    lines = merge_lines((i.productId, i.quantity) for i in event.items)
    if not await store.claim(uow.conn, event.orderId, lines):
        log.info("order already handled; nothing reserved", order_id=event.orderId)
        return
    short: list[ShortItem] = []
    taken: list[store.Stock] = []
    # All items in one transaction: each item is taken by a conditional UPDATE (see
    # store.take). With several items a savepoint comes first; on any shortfall it is rolled
    # back, so the items taken before it are given back and nothing of the order stays
    # reserved. With one item a shortfall took nothing: no savepoint needed.
    savepoint = await uow.conn.begin_nested() if len(lines) > 1 else None
    for product_id, quantity in lines:
        after = await store.take(uow.conn, product_id, quantity, reserve=True)
        if after is not None:
            taken.append(after)
            continue
        current = await store.get_stock(uow.conn, product_id)
        available = 0 if current is None or current.retired else current.available
        short.append(ShortItem(productId=product_id, requested=quantity, available=available))
    if short:
        if savepoint is not None:
            await savepoint.rollback()
        await store.move(uow.conn, event.orderId, SHORT)
        reason = "insufficient stock for " + ", ".join(s.productId for s in short)
        uow.publish(
            StockReservationFailed(orderId=event.orderId, reason=reason, items=short),
            subject=event.orderId,
        )
        return
    if savepoint is not None:
        await savepoint.commit()
    await store.record(uow.conn, Movement.RESERVED, lines, order_id=event.orderId)
    uow.publish(StockReserved(orderId=event.orderId, items=_items(lines)), subject=event.orderId)
    for after in taken:
        await store.tell(uow, after)


async def _give_back(
    uow: UnitOfWork, lines: list[tuple[str, int]], *, back: bool
) -> list[store.Stock]:
    """``store.unreserve`` for each line; the stock rows as they are afterwards."""
    changed = [await store.unreserve(uow.conn, p, q, back=back) for p, q in lines]
    return [s for s in changed if s is not None]


async def _release(uow: UnitOfWork, order_id: str) -> None:
    """RESERVED → RELEASED and the stock back; before OrderCreated, a CANCELLED tombstone that
    makes a late OrderCreated a no-op (``store.move``: one conditional statement, so of two
    events of the order handled at once only one gives the stock back). Either way
    StockReleased tells the order that nothing is held for it (no items: nothing ever was)."""
    lines = await store.move(uow.conn, order_id, RELEASE)
    if lines is None:
        return  # reservation failed, or already released / deducted / returning / tombstoned
    changed = await _give_back(uow, lines, back=True)
    await store.record(uow.conn, Movement.RELEASED, lines, order_id=order_id)
    uow.publish(StockReleased(orderId=order_id, items=_items(lines)), subject=order_id)
    for after in changed:
        await store.tell(uow, after)


async def release_cancelled(event: OrderCancelled, uow: UnitOfWork) -> None:
    """Give the order's stock back → StockReleased. Idempotent (only a RESERVED order is
    released, once, by a conditional move). Tolerates reordering: before OrderCreated it leaves
    a tombstone. An order cancelled while DELIVERING keeps its stock reserved until the return
    arrives (RESERVED → RETURNING, conditional too)."""
    if event.previousStatus == "DELIVERING":
        await store.move(uow.conn, event.orderId, AWAIT_RETURN)
        return
    await _release(uow, event.orderId)


async def release_unpaid(event: PaymentFailed, uow: UnitOfWork) -> None:
    """Payment failed: give the order's stock back → StockReleased. Idempotent and safe beside
    the order's OrderCancelled handled at the same moment (one of them releases); before
    OrderCreated it leaves a tombstone (the order will be cancelled anyway)."""
    await _release(uow, event.orderId)


async def deduct_stock(event: OrderCompleted, uow: UnitOfWork) -> None:
    """Delivered: the reserved stock leaves for good → StockDeducted. Idempotent (once per
    order: RESERVED → DEDUCTED, conditional); a completion for an order not reserved here
    changes nothing."""
    lines = await store.move(uow.conn, event.orderId, DEDUCT)
    if lines is None:
        return
    await _give_back(uow, lines, back=False)
    await store.record(uow.conn, Movement.DEDUCTED, lines, order_id=event.orderId)
    uow.publish(StockDeducted(orderId=event.orderId, items=_items(lines)), subject=event.orderId)


async def receive_return(event: ReturnShipmentReceived, uow: UnitOfWork) -> None:
    """Returned goods are back on hand: what was held for the order (or, if it had been
    deducted, what the return carries) becomes available again; StockReleased tells a
    cancelled order that its stock is back. Idempotent: once per order
    (RESERVED / RETURNING / DEDUCTED → RETURNED, each a conditional move; the states never
    go back, so trying one move and then the other takes exactly one). Tolerates reordering
    with OrderCancelled: a return for a still-RESERVED order is taken as the end of that
    reservation."""
    lines = await store.move(uow.conn, event.orderId, RETURN_HELD)
    if lines is not None:
        changed = await _give_back(uow, lines, back=True)
        released = StockReleased(orderId=event.orderId, items=_items(lines))
        uow.publish(released, subject=event.orderId)
    elif await store.move(uow.conn, event.orderId, RETURN_DEDUCTED) is not None:
        lines = merge_lines((i.productId, i.quantity) for i in event.items)
        added = [await store.add_available(uow.conn, p, q) for p, q in lines]
        changed = [s for s in added if s is not None]
    else:
        log.info("return for an order with nothing held or deducted here", order_id=event.orderId)
        return
    await store.record(uow.conn, Movement.RETURNED, lines, order_id=event.orderId)
    for after in changed:
        await store.tell(uow, after)
