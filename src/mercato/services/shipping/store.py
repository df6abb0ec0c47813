"""Shipments in the database, and the orders known to be cancelled."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mercato.contracts.events import Address, Item
from mercato.services.shipping.domain import Kind, Shipment, ShipmentStatus
from mercato.services.shipping.tables import cancelled_orders, shipments


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shipment(row: Any) -> Shipment:
    return Shipment(
        shipment_id=row.id,
        order_id=row.order_id,
        user_id=row.user_id,
        kind=Kind(row.kind),
        status=ShipmentStatus(row.status),
        items=tuple(Item.model_validate(i) for i in json.loads(row.items)),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        address=Address.model_validate_json(row.address) if row.address else None,
        return_of=row.return_of,
        reason=row.reason,
    )


async def get(conn: AsyncConnection, shipment_id: str, *, lock: bool = False) -> Shipment | None:
    query = select(shipments).where(shipments.c.id == shipment_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return _shipment(row) if row is not None else None


async def of_order(
    conn: AsyncConnection, order_id: str, kind: Kind | None = None, *, lock: bool = False
) -> list[Shipment]:
    query = select(shipments).where(shipments.c.order_id == order_id)
    if kind is not None:
        query = query.where(shipments.c.kind == kind.value)
    query = query.order_by(shipments.c.created_at, shipments.c.id)
    rows = await conn.execute(query.with_for_update() if lock else query)
    return [_shipment(r) for r in rows]


async def keep(conn: AsyncConnection, changed: Sequence[Shipment]) -> None:
    """Insert new shipments, update known ones."""
    for s in changed:
        values = {
            "status": s.status.value,
            "reason": s.reason,
            "updated_at": s.updated_at,
        }
        moved = await conn.execute(
            update(shipments).where(shipments.c.id == s.shipment_id).values(values)
        )
        if moved.rowcount:
            continue
        await conn.execute(
            shipments.insert().values(
                id=s.shipment_id,
                order_id=s.order_id,
                user_id=s.user_id,
                kind=s.kind.value,
                items=json.dumps([i.dump() for i in s.items]),
                address=s.address.model_dump_json(exclude_none=True) if s.address else None,
                return_of=s.return_of,
                created_at=s.created_at,
                **values,
            )
        )


async def remember_cancelled(
    conn: AsyncConnection, order_id: str, previous_status: str | None, now: datetime
) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(
        dialect.insert(cancelled_orders)
        .values(order_id=order_id, previous_status=previous_status, cancelled_at=now)
        .on_conflict_do_nothing()
    )


async def is_cancelled(conn: AsyncConnection, order_id: str) -> bool:
    found = await conn.scalar(
        select(cancelled_orders.c.order_id).where(cancelled_orders.c.order_id == order_id)
    )
    return found is not None


async def due(conn: AsyncConnection, created_before: datetime, limit: int = 100) -> list[str]:
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
