"""Two payment replicas handling a charge and a cancellation of one order at the same moment,
on PostgreSQL (see ``tests/services/replicas.py`` for how the two are made to meet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mercato.contracts.events import OrderCancelled
from mercato.platform.envelope import Envelope
from mercato.platform.storage.tables import outbox
from mercato.services.payment.domain import from_units, to_units
from mercato.services.payment.provider import credit
from mercato.services.payment.service import service
from mercato.services.payment.tables import payments, wallets
from tests.services.payment.conftest import order
from tests.services.replicas import Replicas, replicas

WALLET_ROW = "SELECT 1 FROM wallets WHERE user_id = $1 FOR UPDATE"
PAYMENT_ROW = "SELECT 1 FROM payments WHERE order_id = $1 FOR UPDATE"
ORDER_KEY = (
    "INSERT INTO payments (id, order_id, amount, currency, status, created_at, updated_at)"
    " VALUES ('held', $1, 0, 'USD', 'CANCELLED', now(), now())"
)


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    """Two payment replicas; user u1's wallet holds 100."""
    async with replicas(service, postgres_template) as found:
        async with found.first.db.begin() as conn:
            await credit(conn, "u1", to_units(Decimal(100)), "USD")
        yield found


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(orderId=order_id, reason="changed my mind", previousStatus="CREATED")


async def outcome(two: Replicas, order_id: str) -> tuple[str | None, Decimal, list[str]]:
    """The order's payment status, u1's balance, and the types of the events published."""
    async with two.first.db.connect() as conn:
        status = await conn.scalar(
            sa.select(payments.c.status).where(payments.c.order_id == order_id)
        )
        balance = await conn.scalar(sa.select(wallets.c.balance))
        rows = (await conn.execute(sa.select(outbox.c.envelope).order_by(outbox.c.seq))).all()
    return status, from_units(int(balance)), [Envelope.from_json(r.envelope).type for r in rows]


async def test_a_cancellation_racing_the_charge_refunds_it_without_failing(
    two: Replicas,
) -> None:
    # The charge has written the order's row and waits for the wallet; the cancellation finds
    # no committed row and waits for the charge's key; then it refunds what was taken (a
    # plain tombstone insert failed here with a unique violation, to be retried).
    charge = order("o1", "u1", "30", method="wallet")
    await two.at_once(WALLET_ROW, "u1", charge, cancelled("o1"))
    status, balance, published = await outcome(two, "o1")
    assert (status, balance) == ("REFUNDED", 100)
    assert published == ["PaymentInitiated", "PaymentCompleted", "PaymentRefunded"]


async def test_two_cancellations_at_once_refund_once(two: Replicas) -> None:
    await two.first.handle(order("o1", "u1", "30", method="wallet"))
    await two.at_once(PAYMENT_ROW, "o1", cancelled("o1"), cancelled("o1"))
    status, balance, published = await outcome(two, "o1")
    assert (status, balance) == ("REFUNDED", 100)
    assert published.count("PaymentRefunded") == 1


async def test_two_cancellations_before_the_order_leave_one_tombstone_and_no_charge(
    two: Replicas,
) -> None:
    await two.at_once(ORDER_KEY, "o1", cancelled("o1"), cancelled("o1"))
    await two.first.handle(order("o1", "u1", "30", method="wallet"))  # late: charges nothing
    # One tombstone, so one answer to the order: nothing charged.
    assert await outcome(two, "o1") == ("CANCELLED", 100, ["PaymentCancelled"])
