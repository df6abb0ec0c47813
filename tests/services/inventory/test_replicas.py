"""Two inventory replicas handling two events of one order at the same moment, on PostgreSQL.

Each test makes the two handlers meet: a session of the test's own holds a lock that both
handlers need, both start, and only once both wait for a lock does the session let go. A
handler that decides from a read of the reservation and then writes without a condition
(the old ``_release``) gives the stock back twice here, every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from mercato.contracts.events import (
    Item,
    OrderCancelled,
    OrderCompleted,
    PaymentFailed,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ReturnShipmentReceived,
)
from mercato.platform.envelope import Envelope
from mercato.platform.storage.tables import outbox
from mercato.platform.unit_of_work import transaction
from mercato.services.inventory import store
from mercato.services.inventory.service import service
from mercato.services.inventory.tables import reservations
from tests.services.inventory.shop import order
from tests.services.replicas import Replica, Replicas, meet, replicas

STOCK_ROW = "SELECT 1 FROM stock WHERE product_id = $1 FOR UPDATE"
RESERVATION_ROW = "SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE"
STOCK_KEY = (
    "INSERT INTO stock (product_id, available, reserved, retired, updated_at)"
    " VALUES ($1, 0, 0, false, now())"
)
TOMBSTONE = (
    "INSERT INTO reservations (order_id, status, items, created_at, updated_at)"
    " VALUES ($1, 'CANCELLED', '[]', now(), now())"
)


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    """Two inventory replicas, and a product "p" of 10."""
    async with replicas(service, postgres_template) as found:
        await found.first.handle(ProductCreated(productId="p", name="p", price=1, quantity=10))
        yield found


def cancelled(order_id: str, previous: str = "CREATED") -> OrderCancelled:
    return OrderCancelled(orderId=order_id, reason="x", previousStatus=previous)


def unpaid(order_id: str) -> PaymentFailed:
    return PaymentFailed(paymentId="pay", orderId=order_id, reason="declined")


async def events(r: Replica, event_type: str) -> list[Envelope]:
    async with r.db.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.envelope).order_by(outbox.c.seq))).all()
    return [e for e in (Envelope.from_json(r.envelope) for r in rows) if e.type == event_type]


async def state(r: Replica, order_id: str) -> tuple[str | None, int, int]:
    """The order's reservation status and the product's (available, reserved)."""
    async with r.db.connect() as conn:
        status = await conn.scalar(
            sa.select(reservations.c.status).where(reservations.c.order_id == order_id)
        )
        found = await store.get_stock(conn, "p")
    assert found is not None
    return status, found.available, found.reserved


async def test_payment_failed_and_order_cancelled_at_once_release_the_stock_once(
    two: Replicas,
) -> None:
    await two.first.handle(order("o1", ("p", 3)))
    await two.at_once(STOCK_ROW, "p", unpaid("o1"), cancelled("o1"))
    assert await state(two.first, "o1") == ("RELEASED", 10, 0)
    assert len(await events(two.first, "StockReleased")) == 1


async def test_a_cancellation_racing_the_reservation_releases_it_at_once(two: Replicas) -> None:
    # OrderCreated claims the reservation and waits for the stock row; the cancellation finds
    # no committed reservation, waits for the claim's key, and then releases what it reserved
    # (a tombstone written over it, or a unique violation and a retry, would be wrong).
    await two.at_once(STOCK_ROW, "p", order("o1", ("p", 3)), cancelled("o1"))
    status, available, reserved = await state(two.first, "o1")
    if status == "CANCELLED":  # the cancellation's tombstone came first: nothing reserved
        assert not await events(two.first, "StockReserved")
    else:
        assert status == "RELEASED"
        assert len(await events(two.first, "StockReleased")) == 1
    assert (available, reserved) == (10, 0)


async def test_two_cancellations_at_once_before_the_order_leave_one_tombstone(
    two: Replicas,
) -> None:
    # No reservation to lock yet: the test's session writes the order's key (uncommitted), so
    # both wait for it; it rolls back, one of them writes the tombstone, the other waits for
    # that and then does nothing (no unique violation, no retry).
    await two.at_once(TOMBSTONE, "o1", cancelled("o1"), unpaid("o1"))
    await two.first.handle(order("o1", ("p", 3)))  # late: reserves nothing
    assert await state(two.first, "o1") == ("CANCELLED", 10, 0)
    [released] = await events(two.first, "StockReleased")  # one tombstone, one answer
    assert released.data["items"] == []


async def test_completion_and_cancellation_at_once_deduct_or_release_not_both(
    two: Replicas,
) -> None:
    await two.first.handle(order("o1", ("p", 3)))
    done = OrderCompleted(orderId="o1", paymentId="pay", status="COMPLETED")
    await two.at_once(STOCK_ROW, "p", done, cancelled("o1"))
    status, available, reserved = await state(two.first, "o1")
    deducted = len(await events(two.first, "StockDeducted"))
    released = len(await events(two.first, "StockReleased"))
    assert (deducted, released) in ((1, 0), (0, 1))
    assert (status, available, reserved) == (
        ("DEDUCTED", 7, 0) if deducted else ("RELEASED", 10, 0)
    )


async def test_two_returns_of_a_deducted_order_at_once_put_the_goods_back_once(
    two: Replicas,
) -> None:
    await two.first.handle(order("o1", ("p", 3)))
    await two.first.handle(OrderCompleted(orderId="o1", paymentId="pay", status="COMPLETED"))
    back = ReturnShipmentReceived(
        shipmentId="r1", orderId="o1", items=[Item(productId="p", quantity=3)]
    )
    # Both decide while the reservation row is held; then both want the stock row.
    await two.at_once(RESERVATION_ROW, "o1", back, back)
    assert await state(two.first, "o1") == ("RETURNED", 10, 0)


async def test_a_return_and_a_cancellation_in_delivery_at_once_give_the_goods_back_once(
    two: Replicas,
) -> None:
    await two.first.handle(order("o1", ("p", 3)))
    back = ReturnShipmentReceived(
        shipmentId="r1", orderId="o1", items=[Item(productId="p", quantity=3)]
    )
    await two.at_once(RESERVATION_ROW, "o1", back, cancelled("o1", previous="DELIVERING"))
    # Whichever came first, the goods are back on sale once and nothing stays held.
    assert await state(two.first, "o1") == ("RETURNED", 10, 0)


async def test_a_product_created_and_updated_at_once_gets_the_update(two: Replicas) -> None:
    # A new product's row does not exist to be locked: the test's session holds its key.
    created = ProductCreated(productId="n", name="n", price=1, quantity=10)
    updated = ProductUpdated(productId="n", quantity=4)
    await two.at_once(STOCK_KEY, "n", created, updated)
    async with two.first.db.connect() as conn:
        found = await store.get_stock(conn, "n")
    assert found is not None and (found.available, found.reserved) == (4, 0)


async def test_set_stocks_writes_new_and_known_products_on_postgres(two: Replicas) -> None:
    async with transaction(two.first.db, "inventory") as uow:
        await store.put_stocks(uow, ["n", "p"], 6)
    async with two.first.db.connect() as conn:
        found = [await store.get_stock(conn, p) for p in ("n", "p")]
    assert [(s.available, s.retired) for s in found if s is not None] == [(6, False), (6, False)]


async def test_a_restock_while_the_product_is_deleted_adds_nothing(two: Replicas) -> None:
    # The deletion takes the stock row first; the restock (Restock's update) waits for it and
    # then finds the product retired.
    async def restock() -> store.Stock | None:
        async with transaction(two.first.db, "inventory") as uow:
            return await store.add_available(uow.conn, "p", 5, unless_retired=True)

    deleted = two.of[1].handle(ProductDeleted(productId="p"))
    assert await meet(two.template, "inventory", STOCK_ROW, ["p"], deleted, restock()) == [
        [None],
        None,
    ]
    async with two.first.db.connect() as conn:
        found = await store.get_stock(conn, "p")
    assert found is not None and (found.available, found.retired) == (10, True)


async def test_replicas_starting_together_both_keep_the_low_stock_threshold(two: Replicas) -> None:
    # Each replica's start writes the threshold (service.keep_settings): both wait on the row,
    # then each writes it; neither fails on the key the other wrote meanwhile.
    async def keep(r: Replica, value: int) -> None:
        async with r.db.begin() as conn:
            await store.set_threshold(conn, value)

    await keep(two.first, 5)  # as a start before these two left it
    hold = "SELECT 1 FROM inventory_config WHERE name = $1 FOR UPDATE"
    await meet(
        two.template, "inventory", hold, ["stock_low"], keep(two.of[0], 7), keep(two.of[1], 9)
    )
    async with two.first.db.connect() as conn:
        assert await conn.scalar(sa.text("SELECT value FROM inventory_config")) == 9


async def test_two_restocks_and_a_reservation_at_once_all_count(two: Replicas) -> None:
    # Three transactions on the product's row at the same moment, on two replicas: each adds
    # to (or takes from) the row as it is when its turn comes, so none is lost.
    async def restock(r: Replica, quantity: int, reason: str) -> store.Stock | None:
        async with transaction(r.db, "inventory") as uow:
            return await store.restock(uow, "p", quantity, reason=reason, actor="admin-1")

    runs = [
        restock(two.of[0], 5, "pallet 1"),
        restock(two.of[1], 7, "pallet 2"),
        two.of[1].handle(order("o1", ("p", 3))),
    ]
    await meet(two.template, "inventory", STOCK_ROW, ["p"], *runs)
    assert await state(two.first, "o1") == ("RESERVED", 19, 3)
    async with two.first.db.connect() as conn:
        moved = await store.movements(conn, "p", 10)
    assert sorted((m.kind, m.quantity, m.reason) for m in moved) == [
        ("reserved", 3, None),
        ("restocked", 5, "pallet 1"),
        ("restocked", 7, "pallet 2"),
        ("stocked", 10, None),
    ]
    assert len(await events(two.first, "StockUpdated")) == 4  # created, and one per change
