"""Orders in the database: load (optionally locked), insert, save a reaction, list, history."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.storage.sql import Connection
from mercato.services.order.domain import (
    Change,
    ItemStatus,
    Line,
    Order,
    Reaction,
    Status,
    Timeouts,
)
from mercato.services.order.tables import order_items, order_status_history, orders


@dataclass(frozen=True, slots=True)
class Stored:
    """An order as kept: the domain's order and what only storage knows."""

    order: Order
    version: int
    updated_at: datetime
    cart_id: str | None = None


def _order(row: Any, lines: Sequence[Line]) -> Order:
    payment = PaymentMethod.model_validate_json(row.payment_method) if row.payment_method else None
    address = Address.model_validate_json(row.shipping_address) if row.shipping_address else None
    return Order(
        order_id=row.id,
        user_id=row.user_id,
        currency=row.currency,
        lines=tuple(lines),
        status=Status(row.status),
        status_since=row.status_since,
        created_at=row.created_at,
        payment=payment,
        shipping_address=address,
        payment_id=row.payment_id,
        paid=bool(row.paid),
        refunded=bool(row.refunded),
        reserved=bool(row.reserved),
        shipment_id=row.shipment_id,
        delivered=bool(row.delivered),
        cancelled_from=Status(row.cancelled_from) if row.cancelled_from else None,
        cancel_reason=row.cancel_reason,
        payment_failed=bool(row.payment_failed),
        payment_cancelled=bool(row.payment_cancelled),
        reservation_failed=bool(row.reservation_failed),
        released=bool(row.released),
    )


def _line(row: Any) -> Line:
    return Line(
        row.item_product_id,
        int(row.item_quantity),
        Decimal(row.item_price),
        ItemStatus(row.item_status),
    )


# The hot statements are built once and executed with parameters, so that SQLAlchemy does not
# build, coerce and cache-key them again on every call. An order and its items are read in one
# statement (the items' columns labelled ``item_*``); ``FOR UPDATE OF orders`` locks the order's
# row on PostgreSQL (SQLite renders no lock: its transactions hold the write lock from BEGIN).
_ITEM_COLUMNS = [c.label(f"item_{c.name}") for c in order_items.c if c.name != "order_id"]
_ROWS = select(orders, *_ITEM_COLUMNS).outerjoin(order_items, order_items.c.order_id == orders.c.id)
_LOAD = _ROWS.where(orders.c.id == bindparam("key")).order_by(order_items.c.position)
_LOAD_LOCKED = _LOAD.with_for_update(of=orders)
# Several orders locked at once, in the order of their ids (as any other batch takes them).
_LOAD_MANY_LOCKED = (
    _ROWS.where(orders.c.id.in_(bindparam("keys", expanding=True)))
    .order_by(orders.c.id, order_items.c.position)
    .with_for_update(of=orders)
)
_INSERT = {
    "postgresql": postgresql.insert(orders).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(orders).on_conflict_do_nothing(),
}
_INSERT_ITEMS = order_items.insert()
_UPDATE = update(orders).where(orders.c.id == bindparam("key"))
_UPDATE_ITEMS = update(order_items).where(order_items.c.order_id == bindparam("key"))
_APPEND = order_status_history.insert()
_HISTORY = (
    select(order_status_history)
    .where(order_status_history.c.order_id == bindparam("key"))
    .order_by(order_status_history.c.seq)
)


async def load(conn: Connection, order_id: str, *, lock: bool = False) -> Stored | None:
    """The order, or None. ``lock``: hold its row until commit (PostgreSQL ``FOR UPDATE``;
    SQLite's transactions already hold the database's write lock from their start)."""
    rows = (await conn.execute(_LOAD_LOCKED if lock else _LOAD, {"key": order_id})).all()
    return _stored(rows) if rows else None


async def load_locked(conn: Connection, order_ids: Sequence[str]) -> list[Stored]:
    """The orders of these ids that exist, each row held until commit, in one statement."""
    rows = (await conn.execute(_LOAD_MANY_LOCKED, {"keys": sorted(order_ids)})).all()
    return [_stored(list(one)) for _, one in itertools.groupby(rows, key=lambda r: r.id)]


def _stored(rows: Sequence[Any]) -> Stored:
    """An order from its rows (one per item, the order's columns repeated)."""
    first = rows[0]
    lines = [_line(r) for r in rows if r.item_product_id is not None]
    return Stored(_order(first, lines), int(first.version), first.updated_at, first.cart_id)


def _fields(order: Order) -> dict[str, Any]:
    address = order.shipping_address
    return {
        "shipping_address": address.model_dump_json(exclude_none=True) if address else None,
        "status": order.status.value,
        "status_since": order.status_since,
        "payment_id": order.payment_id,
        "paid": order.paid,
        "refunded": order.refunded,
        "reserved": order.reserved,
        "shipment_id": order.shipment_id,
        "delivered": order.delivered,
        "cancelled_from": order.cancelled_from.value if order.cancelled_from else None,
        "cancel_reason": order.cancel_reason,
        "payment_failed": order.payment_failed,
        "payment_cancelled": order.payment_cancelled,
        "reservation_failed": order.reservation_failed,
        "released": order.released,
    }


async def insert(
    conn: Connection,
    reaction: Reaction,
    now: datetime,
    cart_id: str | None = None,
) -> bool:
    """Keep a new order; False (and nothing written) if its id is taken."""
    order = reaction.order
    payment = order.payment
    placed = await conn.execute(
        _INSERT[conn.dialect.name],
        {
            "id": order.order_id,
            "user_id": order.user_id,
            "currency": order.currency,
            "total_amount": order.total,
            "payment_method": payment.model_dump_json(exclude_none=True) if payment else None,
            "cart_id": cart_id,
            "version": 1,
            "created_at": order.created_at,
            "updated_at": now,
            **_fields(order),
        },
    )
    if placed.rowcount == 0:
        return False
    await conn.execute(
        _INSERT_ITEMS,
        [
            {
                "order_id": order.order_id,
                "product_id": line.product_id,
                "position": i,
                "quantity": line.quantity,
                "price": line.price,
                "status": line.status.value,
            }
            for i, line in enumerate(order.lines)
        ],
    )
    await _append(conn, _history_rows(order.order_id, reaction.changes))
    return True


_HISTORY_COLUMNS = ("order_id", "at", "from_status", "to_status", "reason")


async def save(conn: Connection, before: Stored, reaction: Reaction, now: datetime) -> None:
    """Write a reaction that changed the order (the caller knows it did)."""
    order = reaction.order
    fields = {"key": order.order_id, "version": before.version + 1, "updated_at": now}
    fields |= _fields(order)
    statuses = {line.status for line in order.lines}
    if statuses != {line.status for line in before.order.lines} and len(statuses) == 1:
        await conn.execute(_UPDATE_ITEMS, {"key": order.order_id, "status": statuses.pop().value})
    rows = _history_rows(order.order_id, reaction.changes)
    if conn.dialect.name == "postgresql" and rows:
        # The update and its history rows in one statement: a round trip fewer per saga step.
        numbered = {f"{k}__{n}": v for n, row in enumerate(rows) for k, v in row.items()}
        await conn.execute(_saved_with_history(tuple(fields), len(rows)), fields | numbered)
        return
    await conn.execute(_UPDATE, fields)
    await _append(conn, rows)


@cache
def _saved_with_history(keys: tuple[str, ...], count: int) -> Any:
    """``_UPDATE`` of the columns ``keys`` names, and ``count`` history rows (their values
    named ``<column>__<n>``), as one PostgreSQL statement: the update a data-modifying WITH
    (the order's row is already locked by ``load``). Built once per columns and count."""
    columns = {k: bindparam(k, type_=orders.c[k].type) for k in keys if k != "key"}
    saved = _UPDATE.values(columns).cte("saved")
    history = order_status_history.c
    rows = [
        {k: bindparam(f"{k}__{n}", type_=history[k].type) for k in _HISTORY_COLUMNS}
        for n in range(count)
    ]
    return _APPEND.values(rows).add_cte(saved)


def _history_rows(order_id: str, changes: Sequence[Change]) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order_id,
            "at": c.at,
            "from_status": c.from_status.value if c.from_status else None,
            "to_status": c.to_status.value,
            "reason": c.reason,
        }
        for c in changes
    ]


async def _append(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(_APPEND, rows[0] if len(rows) == 1 else rows)


async def history(conn: Connection, order_id: str) -> list[Change]:
    rows = await conn.execute(_HISTORY, {"key": order_id})
    return [
        Change(
            r.at,
            Status(r.from_status) if r.from_status else None,
            Status(r.to_status),
            r.reason,
        )
        for r in rows
    ]


async def page(
    conn: Connection,
    *,
    user_id: str | None,
    status: Status | None,
    number: int,
    size: int,
) -> tuple[list[Stored], int]:
    """A page of orders, newest first (``user_id`` None: everyone's)."""
    where = []
    if user_id is not None:
        where.append(orders.c.user_id == user_id)
    if status is not None:
        where.append(orders.c.status == status.value)
    total = await conn.scalar(select(func.count()).select_from(orders).where(*where))
    ids = (
        await conn.scalars(
            select(orders.c.id)
            .where(*where)
            .order_by(orders.c.created_at.desc(), orders.c.id.desc())
            .limit(size)
            .offset((number - 1) * size)
        )
    ).all()
    found = [await load(conn, order_id) for order_id in ids]
    return [s for s in found if s is not None], int(total or 0)


_created = orders.c.created_at
_OVERDUE = (
    select(orders.c.id)
    .where(
        or_(
            and_(
                orders.c.status == Status.CREATED.value,
                or_(
                    _created <= bindparam("unpaid_since"),
                    and_(~orders.c.reserved, _created <= bindparam("unreserved_since")),
                ),
            ),
            and_(
                orders.c.status == Status.PAID.value,
                _created <= bindparam("unreserved_since"),
            ),
            and_(
                orders.c.status == Status.RESERVED.value,
                orders.c.status_since <= bindparam("unshipped_since"),
            ),
        )
    )
    .order_by(_created)
    .limit(bindparam("limit"))
)


async def overdue(
    conn: Connection, timeouts: Timeouts, now: datetime, limit: int = 100
) -> list[str]:
    """Orders whose waiting step has timed out (the conditions of ``domain.deadline``)."""
    result = await conn.scalars(
        _OVERDUE,
        {
            "unpaid_since": now - timeouts.payment,
            "unreserved_since": now - timeouts.reservation,
            "unshipped_since": now - timeouts.shipment,
            "limit": limit,
        },
    )
    return list(result.all())
