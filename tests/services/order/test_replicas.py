"""Two order replicas applying two participants' news of one order at the same moment, on
PostgreSQL: the order's row lock makes them take turns (see ``tests/services/replicas.py``
for how the two are made to meet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mercato.contracts.events import (
    CartCheckedOut,
    CartItem,
    Item,
    PaymentCompleted,
    PaymentFailed,
    PaymentMethod,
    ShortItem,
    StockReservationFailed,
    StockReserved,
)
from mercato.platform.envelope import Envelope
from mercato.platform.storage.tables import outbox
from mercato.services.order.service import service
from mercato.services.order.tables import orders
from tests.services.replicas import Replicas, replicas

ORDER_ROW = "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE"


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    """Two order replicas and order o1 (CREATED)."""
    async with replicas(service, postgres_template) as found:
        checkout = CartCheckedOut(
            userId="u1",
            cartId="c1",
            orderId="o1",
            items=[CartItem(productId="p", quantity=1, price=Decimal("5.00"))],
            payment=PaymentMethod(method="wallet"),
        )
        assert await found.first.handle(checkout) == [None]
        yield found


async def outcome(two: Replicas) -> tuple[str, list[tuple[str, str | None]]]:
    """o1's status and the (type, new status) of what the order service published."""
    async with two.first.db.connect() as conn:
        status = await conn.scalar(sa.select(orders.c.status).where(orders.c.id == "o1"))
        rows = (await conn.execute(sa.select(outbox.c.envelope).order_by(outbox.c.seq))).all()
    said = [Envelope.from_json(r.envelope) for r in rows]
    return str(status), [(e.type, e.data.get("status")) for e in said]


async def test_payment_and_reservation_at_once_move_the_order_once_each(two: Replicas) -> None:
    paid = PaymentCompleted(paymentId="pay", orderId="o1", status="COMPLETED")
    reserved = StockReserved(orderId="o1", items=[Item(productId="p", quantity=1)])
    await two.at_once(ORDER_ROW, "o1", paid, reserved)
    status, said = await outcome(two)
    assert status == "RESERVED"
    changes = [s for t, s in said if t == "OrderStatusChanged"]
    assert changes == ["CREATED", "PAID", "RESERVED"]


async def test_two_failures_at_once_cancel_the_order_once(two: Replicas) -> None:
    unpaid = PaymentFailed(paymentId="pay", orderId="o1", reason="declined")
    short = StockReservationFailed(
        orderId="o1", reason="short", items=[ShortItem(productId="p", requested=1, available=0)]
    )
    await two.at_once(ORDER_ROW, "o1", unpaid, short)
    status, said = await outcome(two)
    assert status == "CANCELLED"
    assert [t for t, _ in said].count("OrderCancelled") == 1
