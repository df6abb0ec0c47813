"""order's use cases over its store: place an order, feed the saga, expire overdue steps.

Each runs inside the caller's unit of work (a handler's, a request's or the timeout task's):
the order's row is locked, the domain decides, the change and its events commit together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from weakref import WeakKeyDictionary

import structlog

from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.order import saga_metrics, store
from mercato.services.order.domain import (
    Reaction,
    SagaMessage,
    Timeouts,
    expire,
    place,
    react,
    readdress,
)
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


# The orders a unit of work has loaded or written, as they are in it: a batch of saga messages
# for one order reads it once. Sound because the transaction holds the order's row from its
# first read on (SQLite's write lock, PostgreSQL's FOR UPDATE), and only these use cases write
# orders; a rolled-back unit of work is dropped with what it knew.
_known: WeakKeyDictionary[UnitOfWork, dict[str, Stored]] = WeakKeyDictionary()


def _kept(uow: UnitOfWork, stored: Stored) -> Stored:
    _known.setdefault(uow, {})[stored.order.order_id] = stored
    return stored


async def _locked(uow: UnitOfWork, order_id: str) -> Stored | None:
    known = _known.get(uow, {}).get(order_id)
    if known is not None:
        return known
    stored = await store.load(uow.conn, order_id, lock=True)
    return _kept(uow, stored) if stored is not None else None


async def lock_all(uow: UnitOfWork, order_ids: Iterable[str]) -> None:
    """Read and lock at once the orders a batch of events is about to change; its handlers
    then find them in the unit of work (``_locked``). One order is left to its handler."""
    known = _known.get(uow, {})
    wanted = {i for i in order_ids if i not in known}
    if len(wanted) > 1:
        for stored in await store.load_locked(uow.conn, list(wanted)):
            _kept(uow, stored)


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
    if not await store.insert(uow.conn, reaction, now, cart_id=cart_id):
        raise OrderExists(order_id)
    _publish(uow, reaction)
    placed = _kept(uow, Stored(reaction.order, 1, now, cart_id))
    # A wait may have come before the order: hand it the order as committed.
    uow.after_commit(lambda: nudge(order_id, placed, reaction.changes))
    log.info("order placed", order_id=order_id, total=str(reaction.order.total))
    return placed


async def apply(uow: UnitOfWork, order_id: str, message: SagaMessage) -> Stored | None:
    """Feed one message to the order's saga; None if there is no such order."""
    before = await _locked(uow, order_id)
    if before is None:
        return None
    now = now_utc()
    reaction = react(before.order, message, now)
    return await _keep(uow, before, reaction, now)


async def expire_if_overdue(uow: UnitOfWork, order_id: str, timeouts: Timeouts) -> Stored | None:
    before = await _locked(uow, order_id)
    if before is None:
        return None
    now = now_utc()
    return await _keep(uow, before, expire(before.order, timeouts, now), now)


async def change_address(uow: UnitOfWork, order_id: str, address: Address) -> Stored | None:
    """A new shipping address (``CannotChange`` once handed to delivery); None if no order."""
    before = await _locked(uow, order_id)
    if before is None:
        return None
    return await _keep(uow, before, readdress(before.order, address), now_utc())


async def _keep(uow: UnitOfWork, before: Stored, reaction: Reaction, now: datetime) -> Stored:
    _publish(uow, reaction)
    if reaction.order == before.order:  # nothing to write (an event may still go out)
        return before
    await store.save(uow.conn, before, reaction, now)
    for change in reaction.changes:
        log.info(
            "order status changed",
            order_id=reaction.order.order_id,
            previous=change.from_status,
            status=change.to_status,
            reason=change.reason,
        )
    after = _kept(uow, Stored(reaction.order, before.version + 1, now, before.cart_id))

    def committed() -> None:
        nudge(after.order.order_id, after, reaction.changes)
        saga_metrics.observe(after.order.created_at, reaction.changes)

    uow.after_commit(committed)
    return after
