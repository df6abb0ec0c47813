"""order's use cases over its store: place an order, feed the saga, expire overdue steps.

Each runs inside the caller's unit of work (a handler's, a request's or the timeout task's):
the order's row is locked, the domain decides, the change and its events commit together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import structlog

from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.order import store
from mercato.services.order.domain import Reaction, SagaMessage, Timeouts, expire, place, react
from mercato.services.order.store import Stored
from mercato.services.order.watch import nudge

log = structlog.get_logger(__name__)


class OrderExists(Exception):
    pass


def now_utc() -> datetime:
    return datetime.now(UTC)


def _publish(uow: UnitOfWork, reaction: Reaction) -> None:
    order_id = reaction.order.order_id
    for event in reaction.events:
        uow.publish(event, subject=order_id, correlationid=order_id)


async def place_order(
    uow: UnitOfWork,
    order_id: str,
    user_id: str,
    lines: Iterable[tuple[str, int, Decimal]],
    *,
    currency: str = "USD",
    payment: PaymentMethod | None = None,
    shipping_address: Address | None = None,
    cart_id: str | None = None,
) -> Stored:
    """A new order (``InvalidOrder`` if it cannot be placed, ``OrderExists`` for a taken id)."""
    if await store.load(uow.conn, order_id) is not None:
        raise OrderExists(order_id)
    now = now_utc()
    reaction = place(
        order_id,
        user_id,
        lines,
        now,
        currency=currency,
        payment=payment,
        shipping_address=shipping_address,
    )
    await store.insert(uow.conn, reaction, now, cart_id=cart_id)
    _publish(uow, reaction)
    uow.after_commit(lambda: nudge(order_id))  # a wait may have come before the order
    log.info("order placed", order_id=order_id, total=str(reaction.order.total))
    return Stored(reaction.order, 1, now, cart_id)


async def apply(uow: UnitOfWork, order_id: str, message: SagaMessage) -> Stored | None:
    """Feed one message to the order's saga; None if there is no such order."""
    before = await store.load(uow.conn, order_id, lock=True)
    if before is None:
        return None
    now = now_utc()
    reaction = react(before.order, message, now)
    return await _keep(uow, before, reaction, now)


async def expire_if_overdue(uow: UnitOfWork, order_id: str, timeouts: Timeouts) -> Stored | None:
    before = await store.load(uow.conn, order_id, lock=True)
    if before is None:
        return None
    now = now_utc()
    return await _keep(uow, before, expire(before.order, timeouts, now), now)


async def _keep(uow: UnitOfWork, before: Stored, reaction: Reaction, now: datetime) -> Stored:
    if reaction.order == before.order and not reaction.events:
        return before
    await store.save(uow.conn, before, reaction, now)
    _publish(uow, reaction)
    order_id = reaction.order.order_id
    uow.after_commit(lambda: nudge(order_id))
    for change in reaction.changes:
        log.info(
            "order status changed",
            order_id=reaction.order.order_id,
            previous=change.from_status,
            status=change.to_status,
            reason=change.reason,
        )
    if reaction.order == before.order:
        return before
    return Stored(reaction.order, before.version + 1, now, before.cart_id)
