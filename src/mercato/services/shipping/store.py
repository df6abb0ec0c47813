"""Shipments in the database, and the orders known to be cancelled."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import Address, Item
from mercato.platform.storage.sql import Connection
from mercato.services.shipping.domain import Kind, Shipment, ShipmentStatus
from mercato.services.shipping.tables import cancelled_orders, shipments


def _shipment(row: Any) -> Shipment:
    return Shipment(
        shipment_id=row.id,
        order_id=row.order_id,
        user_id=row.user_id,
        kind=Kind(row.kind),
        status=ShipmentStatus(row.status),
        items=tuple(Item.model_validate(i) for i in json.loads(row.items)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        address=Address.model_validate_json(row.address) if row.address else None,
        return_of=row.return_of,
        reason=row.reason,
    )


_ORDER_ID: BindParameter[str] = bindparam("b_order_id")
_BY_ID = select(shipments).where(shipments.c.id == bindparam("b_id"))
_OF_ORDER = select(shipments).where(shipments.c.order_id == _ORDER_ID)
_OF_ORDER_KIND = _OF_ORDER.where(shipments.c.kind == bindparam("b_kind"))
_ORDERED = (shipments.c.created_at, shipments.c.id)
# (kind given, lock) → statement; the lock: PostgreSQL FOR UPDATE (SQLite's transactions hold
# the write lock from their start).
_OF_ORDER_BY = {
    (kind, lock): (q.order_by(*_ORDERED).with_for_update() if lock else q.order_by(*_ORDERED))
    for kind, q in ((False, _OF_ORDER), (True, _OF_ORDER_KIND))
    for lock in (False, True)
}
# What a hand-over needs to know, in one statement: the order's delivery shipment (if any)
# and whether the order is known cancelled.
_BEFORE_SHIPPING = select(
    select(shipments.c.id)
    .where(shipments.c.order_id == _ORDER_ID, shipments.c.kind == Kind.DELIVERY.value)
    .scalar_subquery(),
    select(cancelled_orders.c.order_id).where(cancelled_orders.c.order_id == _ORDER_ID).exists(),
)
_NEW = shipments.insert()
_CHANGE = (
    update(shipments)
    .where(shipments.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"), reason=bindparam("b_reason"), updated_at=bindparam("b_now")
    )
)
_CANCELLED = {
    "postgresql": postgresql.insert(cancelled_orders).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(cancelled_orders).on_conflict_do_nothing(),
}


# PostgreSQL's two-key advisory locks (a key space apart from the one-key locks the outbox
# relays take): the first key says what is locked, the second which order.
_ORDER_TURN = text("SELECT pg_advisory_xact_lock(:kind, hashtext(:order_id))")
_ORDERS = 0x5348_4950  # "SHIP"


async def take_turn(conn: Connection, order_id: str) -> None:
    """Until the transaction ends, the order's hand-over and cancellation take turns: on
    PostgreSQL two replicas could otherwise each decide from what the other had not yet
    committed (a hand-over that saw no cancellation, a cancellation that saw no shipment).
    SQLite's transactions hold the write lock from their start: nothing to do."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_ORDER_TURN, {"kind": _ORDERS, "order_id": order_id})


async def get(conn: Connection, shipment_id: str, *, lock: bool = False) -> Shipment | None:
    query = _BY_ID.with_for_update() if lock else _BY_ID
    row = (await conn.execute(query, {"b_id": shipment_id})).first()
    return _shipment(row) if row is not None else None


async def of_order(
    conn: Connection, order_id: str, kind: Kind | None = None, *, lock: bool = False
) -> list[Shipment]:
    params = {"b_order_id": order_id, "b_kind": kind.value if kind is not None else None}
    rows = await conn.execute(_OF_ORDER_BY[kind is not None, lock], params)
    return [_shipment(r) for r in rows]


async def before_shipping(conn: Connection, order_id: str) -> tuple[str | None, bool]:
    """The id of the order's delivery shipment (None: not made yet) and whether the order is
    known to be cancelled: what a hand-over decides on, read in one statement."""
    delivery_id, cancelled = (await conn.execute(_BEFORE_SHIPPING, {"b_order_id": order_id})).one()
    return delivery_id, bool(cancelled)


async def keep(conn: Connection, changed: Sequence[Shipment], known: Collection[str]) -> None:
    """Insert the new shipments, update the ``known`` ones (those read from the database)."""
    for s in changed:
        if s.shipment_id in known:
            params = {
                "b_id": s.shipment_id,
                "b_status": s.status.value,
                "b_reason": s.reason,
                "b_now": s.updated_at,
            }
            await conn.execute(_CHANGE, params)
            continue
        row = {
            "id": s.shipment_id,
            "order_id": s.order_id,
            "user_id": s.user_id,
            "kind": s.kind.value,
            "status": s.status.value,
            "items": json.dumps([i.dump() for i in s.items]),
            "address": s.address.model_dump_json(exclude_none=True) if s.address else None,
            "return_of": s.return_of,
            "reason": s.reason,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
        }
        await conn.execute(_NEW, row)


async def remember_cancelled(
    conn: Connection, order_id: str, previous_status: str | None, now: datetime
) -> None:
    row = {"order_id": order_id, "previous_status": previous_status, "cancelled_at": now}
    await conn.execute(_CANCELLED[conn.dialect.name], row)


async def due(conn: Connection, created_before: datetime, limit: int = 100) -> list[str]:
    """Shipments on their way since before ``created_before`` (the sandbox carrier's round)."""
    result = await conn.scalars(
        select(shipments.c.id)
        .where(
            shipments.c.status == ShipmentStatus.IN_TRANSIT.value,
            shipments.c.created_at <= created_before,
        )
        .order_by(shipments.c.created_at)
        .limit(limit)
    )
    return list(result.all())
