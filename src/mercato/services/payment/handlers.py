"""payment's event handlers: charge on OrderCreated, refund or void on OrderCancelled.

Idempotency: the inbox makes a redelivered event a no-op, and behind it the payments table
holds one row per order (``order_id`` is unique). A handler that finds the order's row does
nothing more, and two deliveries racing past the inbox cannot both insert: the loser's
transaction fails on the unique key, is retried, and then finds the row. Charges happen in
the same transaction as the row, so there is never a second capture for one order.

Reordering: OrderCancelled before OrderCreated leaves a CANCELLED tombstone row for the
order, so the late OrderCreated finds the row and never charges.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from mercato.contracts.events import (
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
)
from mercato.platform.ids import new_id
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.payment.domain import Outcome, Status, from_units, to_units
from mercato.services.payment.provider import PROVIDERS, Charge, Declined
from mercato.services.payment.tables import cards, payments


async def _set(uow: UnitOfWork, payment_id: str, status: Status, reason: str | None) -> None:
    await uow.conn.execute(
        update(payments)
        .where(payments.c.id == payment_id)
        .values(status=status, reason=reason, updated_at=datetime.now(UTC))
    )


async def charge_order(event: OrderCreated, uow: UnitOfWork) -> None:
    """PaymentInitiated, then authorize and capture: PaymentCompleted or PaymentFailed.

    Idempotent and tolerant of reordering through the one row per order (module docstring):
    a duplicate or an OrderCreated after OrderCancelled finds the row and does nothing.
    """
    order_id = event.orderId
    found = await uow.conn.execute(select(payments.c.id).where(payments.c.order_id == order_id))
    if found.first() is not None:
        return
    now = datetime.now(UTC)
    payment_id = new_id()
    method = event.payment
    row: dict[str, Any] = {
        "id": payment_id,
        "order_id": order_id,
        "user_id": event.userId,
        "amount": to_units(event.totalAmount),
        "currency": event.currency,
        "method": method.method if method else None,
        "token": method.token if method else None,
        "last4": method.last4 if method else None,
        "status": Status.INITIATED,
        "created_at": now,
        "updated_at": now,
    }
    await uow.conn.execute(payments.insert().values(**row))
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

    async def fail(reason: str, status: Status = Status.FAILED) -> None:
        await _set(uow, payment_id, status, reason)
        uow.publish(
            PaymentFailed(paymentId=payment_id, orderId=order_id, reason=reason),
            subject=order_id,
        )

    if method is None:
        return await fail("the order has no payment method")
    outcome = Outcome.APPROVED
    if method.method == "card":
        if method.token is None:
            return await fail("a card payment needs a card token")
        card = (await uow.conn.execute(select(cards).where(cards.c.token == method.token))).first()
        if card is None:
            return await fail(f"unknown card token {method.token}")
        if card.user_id != event.userId:
            return await fail("the card token belongs to another user")
        outcome = Outcome(card.outcome)
        await uow.conn.execute(
            update(payments).where(payments.c.id == payment_id).values(last4=card.last4)
        )
    provider = PROVIDERS[method.method]
    charge = Charge(payment_id, event.userId, row["amount"], event.currency, outcome)
    try:
        await provider.authorize(uow.conn, charge)
    except Declined as exc:
        return await fail(str(exc))
    await _set(uow, payment_id, Status.AUTHORIZED, None)
    try:
        await provider.capture(uow.conn, charge)
    except Declined as exc:
        # Still authorized: the cancellation that follows voids it.
        return await fail(str(exc), Status.AUTHORIZED)
    await _set(uow, payment_id, Status.CAPTURED, None)
    uow.publish(
        PaymentCompleted(paymentId=payment_id, orderId=order_id, status="COMPLETED"),
        subject=order_id,
    )


async def refund_or_void(event: OrderCancelled, uow: UnitOfWork) -> None:
    """Refund a captured payment (PaymentRefunded) or void an authorized one.

    Idempotent: the status moves with a conditional update (CAPTURED -> REFUNDED, AUTHORIZED
    -> VOIDED) and only the update that matched gives money back, so a redelivery refunds
    nothing twice. Tolerates reordering: with no payment yet it inserts the CANCELLED
    tombstone that a late OrderCreated respects; a payment already failed, refunded, voided
    or cancelled is left alone.
    """
    order_id = event.orderId
    row = (await uow.conn.execute(select(payments).where(payments.c.order_id == order_id))).first()
    now = datetime.now(UTC)
    if row is None:
        await uow.conn.execute(
            payments.insert().values(
                id=new_id(),
                order_id=order_id,
                user_id=event.userId,
                amount=0,
                currency="USD",
                status=Status.CANCELLED,
                reason=event.reason,
                created_at=now,
                updated_at=now,
            )
        )
        return
    if row.status not in (Status.CAPTURED, Status.AUTHORIZED) or row.method is None:
        return
    target = Status.REFUNDED if row.status == Status.CAPTURED else Status.VOIDED
    moved = await uow.conn.execute(
        update(payments)
        .where(payments.c.id == row.id, payments.c.status == row.status)
        .values(status=target, reason=event.reason, updated_at=now)
    )
    if moved.rowcount != 1:
        return
    provider = PROVIDERS[row.method]
    charge = Charge(row.id, row.user_id, row.amount, row.currency)
    if target == Status.VOIDED:
        await provider.void(uow.conn, charge)
        return
    await provider.refund(uow.conn, charge)
    uow.publish(
        PaymentRefunded(
            paymentId=row.id, orderId=order_id, amount=from_units(row.amount), reason=event.reason
        ),
        subject=order_id,
    )
