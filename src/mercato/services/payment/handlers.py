"""payment's event handlers: charge on OrderCreated, refund on OrderCancelled.

Idempotency: the inbox makes a redelivered event a no-op, and behind it the payments table
holds one row per order (``order_id`` is unique). The charge writes the order's row with
``INSERT … ON CONFLICT (order_id) DO NOTHING`` before it asks the provider anything: when the
order has a row already, nothing is inserted and nothing more is done, and of two deliveries
racing past the inbox the second waits for the first (PostgreSQL; SQLite runs them one at a
time) and then finds its row. Charges happen in the same transaction as the row, so there is
never a second capture for one order.

Every cancellation gets an answer the order can settle on: PaymentRefunded (money back),
PaymentCancelled (nothing was charged, nothing will be), or the PaymentFailed it had already.

Reordering: OrderCancelled before OrderCreated leaves a CANCELLED tombstone row for the
order, so the late OrderCreated finds the row and never charges. Concurrency: a charge and a
cancellation of one order handled at once by two replicas meet on that key (the tombstone is
inserted ``ON CONFLICT DO NOTHING`` too), and a refund moves the status with a
conditional update: whichever comes second sees what the first did.

The statements are built once, at import, and executed with their parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import (
    OrderCancelled,
    OrderCreated,
    PaymentCancelled,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
)
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.payment.domain import Outcome, Status, from_units, to_units
from mercato.services.payment.provider import PROVIDERS, Charge, Declined
from mercato.services.payment.tables import cards, payments

_CARD = select(cards.c.user_id, cards.c.last4, cards.c.outcome).where(
    cards.c.token == bindparam("b_token")
)
# The order's first payment row (a charge, or a cancellation's tombstone), or nothing (the
# order has one; a concurrent insert of the order's key is waited for).
_FIRST_ROW = {
    "postgresql": postgresql.insert(payments).on_conflict_do_nothing(
        index_elements=[payments.c.order_id]
    ),
    "sqlite": sqlite.insert(payments).on_conflict_do_nothing(index_elements=[payments.c.order_id]),
}
_OF_ORDER = select(payments).where(payments.c.order_id == bindparam("b_order_id"))
_SET = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"), reason=bindparam("b_reason"), updated_at=bindparam("b_now")
    )
)
# Moves the status only from the one it was read with: of two concurrent moves, one matches.
_MOVE = _SET.where(payments.c.status == bindparam("b_from"))


async def _set(uow: UnitOfWork, payment_id: str, status: Status, reason: str | None) -> None:
    params = {
        "b_id": payment_id,
        "b_status": status,
        "b_reason": reason,
        "b_now": datetime.now(UTC),
    }
    await uow.conn.execute(_SET, params)


async def _refusal(conn: Connection, event: OrderCreated) -> tuple[str | None, Outcome, str | None]:
    """Why the order's payment method cannot be charged at all (None: it can be tried), what
    the sandbox does with its card, and the last four digits to keep."""
    method = event.payment
    if method is None:
        return "the order has no payment method", Outcome.APPROVED, None
    if method.method != "card":
        return None, Outcome.APPROVED, method.last4
    if method.token is None:
        return "a card payment needs a card token", Outcome.APPROVED, method.last4
    card = (await conn.execute(_CARD, {"b_token": method.token})).first()
    if card is None:
        return f"unknown card token {method.token}", Outcome.APPROVED, method.last4
    if card.user_id != event.userId:
        return "the card token belongs to another user", Outcome.APPROVED, method.last4
    return None, Outcome(card.outcome), card.last4


async def charge_order(event: OrderCreated, uow: UnitOfWork) -> None:
    """PaymentInitiated, then authorize and capture: PaymentCompleted or PaymentFailed.

    Idempotent and tolerant of reordering through the one row per order (module docstring):
    a duplicate or an OrderCreated after OrderCancelled finds the row and does nothing.
    """
    order_id = event.orderId
    method = event.payment
    refused, outcome, last4 = await _refusal(uow.conn, event)
    now = datetime.now(UTC)
    payment_id = new_id()
    row: dict[str, Any] = {
        "id": payment_id,
        "order_id": order_id,
        "user_id": event.userId,
        "amount": to_units(event.totalAmount),
        "currency": event.currency,
        "method": method.method if method else None,
        "token": method.token if method else None,
        "last4": last4,
        # The status the charge ends with if the provider agrees: the row commits together
        # with the charge, so no one sees it before; a refusal rewrites it below.
        "status": Status.FAILED if refused else Status.CAPTURED,
        "reason": refused,
        "created_at": now,
        "updated_at": now,
    }
    inserted = await uow.conn.execute(_FIRST_ROW[uow.conn.dialect.name], row)
    if inserted.rowcount != 1:
        return  # the order has its row: charged (or being charged) already, or cancelled
    uow.publish(
        PaymentInitiated(
            paymentId=payment_id,
            orderId=order_id,
            userId=event.userId,
            amount=event.totalAmount,
            status=Status.INITIATED,
        ),
        subject=order_id,
    )

    def failed(reason: str) -> None:
        uow.publish(
            PaymentFailed(paymentId=payment_id, orderId=order_id, reason=reason),
            subject=order_id,
        )

    if refused is not None or method is None:
        return failed(refused or "the order has no payment method")
    provider = PROVIDERS[method.method]
    charge = Charge(
        payment_id, event.userId, row["amount"], event.currency, outcome, order_id=order_id
    )
    try:
        await provider.authorize(uow.conn, charge)
    except Declined as exc:
        await _set(uow, payment_id, Status.FAILED, str(exc))
        return failed(str(exc))
    try:
        await provider.capture(uow.conn, charge)
    except Declined as exc:
        # Authorized but not captured: the hold is voided now, so a failed payment holds nothing.
        await provider.void(uow.conn, charge)
        await _set(uow, payment_id, Status.VOIDED, str(exc))
        return failed(str(exc))
    uow.publish(
        PaymentCompleted(paymentId=payment_id, orderId=order_id, status="COMPLETED"),
        subject=order_id,
    )


async def refund(event: OrderCancelled, uow: UnitOfWork) -> None:
    """Refund a captured payment (PaymentRefunded).

    Idempotent: the status moves with a conditional update (CAPTURED -> REFUNDED) and only the
    update that matched gives money back, so a redelivery, or another cancellation handled at
    once by another replica, refunds nothing twice. Tolerates reordering: with no payment yet
    it inserts the CANCELLED tombstone that a late OrderCreated respects and says so
    (PaymentCancelled); ``ON CONFLICT DO NOTHING``: when the order's charge is being written at
    the same moment, it waits for it and then refunds what it took. A payment already failed,
    refunded, voided or cancelled is left alone (its event was published then).
    """
    order_id = event.orderId
    row = (await uow.conn.execute(_OF_ORDER, {"b_order_id": order_id})).first()
    now = datetime.now(UTC)
    if row is None:
        tombstone_id = new_id()
        tombstone = {
            "id": tombstone_id,
            "order_id": order_id,
            "user_id": event.userId,
            "amount": 0,
            "currency": "USD",
            "status": Status.CANCELLED,
            "reason": event.reason,
            "created_at": now,
            "updated_at": now,
        }
        inserted = await uow.conn.execute(_FIRST_ROW[uow.conn.dialect.name], tombstone)
        if inserted.rowcount == 1:
            cancelled = PaymentCancelled(
                paymentId=tombstone_id, orderId=order_id, reason=event.reason
            )
            uow.publish(cancelled, subject=order_id)
            return
        # A charge of the order held the key (another replica, uncommitted when we read);
        # the insert waited for its commit: read the payment it made.
        row = (await uow.conn.execute(_OF_ORDER, {"b_order_id": order_id})).one()
    if row.status != Status.CAPTURED or row.method is None:
        return
    params = {
        "b_id": row.id,
        "b_from": row.status,
        "b_status": Status.REFUNDED,
        "b_reason": event.reason,
        "b_now": now,
    }
    moved = await uow.conn.execute(_MOVE, params)
    if moved.rowcount != 1:
        return
    provider = PROVIDERS[row.method]
    charge = Charge(
        row.id, row.user_id, row.amount, row.currency, order_id=order_id, reason=event.reason
    )
    await provider.refund(uow.conn, charge)
    uow.publish(
        PaymentRefunded(
            paymentId=row.id, orderId=order_id, amount=from_units(row.amount), reason=event.reason
        ),
        subject=order_id,
    )
