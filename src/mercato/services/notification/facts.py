"""What notification keeps of other services' news: users (identity), orders (order) and
product names (catalog). Every write tolerates reordering and redelivery: a value is replaced
only by one from a later event (each field keeps its event's time), an order is written once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, select
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import PricedItem
from mercato.platform.storage.sql import Connection
from mercato.services.notification.tables import orders, products, users


@dataclass(frozen=True)
class User:
    user_id: str
    email: str | None
    name: str | None


@dataclass(frozen=True)
class Line:
    product_id: str
    name: str | None
    quantity: int
    price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True)
class Order:
    order_id: str
    user_id: str
    lines: tuple[Line, ...]
    total: Decimal
    currency: str


def _insert(conn: Connection) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _newer(table: Any, stmt: Any, field: str, stamp: str) -> ColumnElement[Any]:
    """``field`` from the incoming row if it has one and its event is later than the kept one."""
    new, old = stmt.excluded, table.c
    later = (new[field].is_not(None)) & (old[stamp].is_(None) | (new[stamp] > old[stamp]))
    return case((later, new[field]), else_=old[field])


async def keep_user(
    conn: Connection,
    user_id: str,
    at: datetime,
    *,
    email: str | None = None,
    name: str | None = None,
    is_admin: bool | None = None,
) -> None:
    """Whatever the event told (None: it did not say), unless a later event told it already."""
    stmt = _insert(conn)(users).values(
        user_id=user_id,
        email=email,
        email_at=at if email is not None else None,
        name=name,
        name_at=at if name is not None else None,
        is_admin=bool(is_admin),
        roles_at=at if is_admin is not None else None,
    )
    # The stamps first read the old values: every CASE below sees the row as it was.
    stmt = stmt.on_conflict_do_update(
        index_elements=[users.c.user_id],
        set_={
            "email": _newer(users, stmt, "email", "email_at"),
            "email_at": _newer(users, stmt, "email_at", "email_at"),
            "name": _newer(users, stmt, "name", "name_at"),
            "name_at": _newer(users, stmt, "name_at", "name_at"),
            "is_admin": _newer(users, stmt, "is_admin", "roles_at")
            if is_admin is not None
            else users.c.is_admin,
            "roles_at": _newer(users, stmt, "roles_at", "roles_at"),
        },
    )
    await conn.execute(stmt)


async def keep_order(
    conn: Connection,
    order_id: str,
    user_id: str,
    items: Sequence[PricedItem],
    total: Decimal,
    currency: str,
    at: datetime,
) -> None:
    row = {
        "order_id": order_id,
        "user_id": user_id,
        "items": json.dumps([i.dump() for i in items]),
        "total_amount": str(total),
        "currency": currency,
        "created_at": at,
    }
    await conn.execute(_insert(conn)(orders).values(row).on_conflict_do_nothing())


async def keep_product_name(conn: Connection, product_id: str, name: str, at: datetime) -> None:
    stmt = _insert(conn)(products).values(product_id=product_id, name=name, name_at=at)
    later = stmt.excluded.name_at > products.c.name_at
    stmt = stmt.on_conflict_do_update(
        index_elements=[products.c.product_id],
        set_={
            "name": case((later, stmt.excluded.name), else_=products.c.name),
            "name_at": case((later, stmt.excluded.name_at), else_=products.c.name_at),
        },
    )
    await conn.execute(stmt)


async def user(conn: Connection, user_id: str) -> User | None:
    row = (
        await conn.execute(
            select(users.c.user_id, users.c.email, users.c.name).where(users.c.user_id == user_id)
        )
    ).first()
    return User(row.user_id, row.email, row.name) if row is not None else None


async def admins(conn: Connection) -> list[User]:
    rows = await conn.execute(
        select(users.c.user_id, users.c.email, users.c.name)
        .where(users.c.is_admin.is_(True))
        .order_by(users.c.user_id)
    )
    return [User(r.user_id, r.email, r.name) for r in rows]


async def order(conn: Connection, order_id: str) -> Order | None:
    row = (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()
    if row is None:
        return None
    items = [PricedItem.model_validate(i, strict=False) for i in json.loads(row.items)]
    names = await product_names(conn, [i.productId for i in items])
    lines = tuple(Line(i.productId, names.get(i.productId), i.quantity, i.price) for i in items)
    return Order(row.order_id, row.user_id, lines, Decimal(row.total_amount), row.currency)


async def product_names(conn: Connection, product_ids: Sequence[str]) -> dict[str, str]:
    if not product_ids:
        return {}
    rows = await conn.execute(
        select(products.c.product_id, products.c.name).where(
            products.c.product_id.in_(sorted(set(product_ids)))
        )
    )
    return {r.product_id: r.name for r in rows}
