"""inventory's state: stock rows, reservations, and the events every change causes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mercato.contracts.events import OutOfStock, StockLow, StockUpdated
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.inventory.domain import Reservation, warnings_for
from mercato.services.inventory.tables import config, reservations, stock

DEFAULT_THRESHOLD = 5


@dataclass(frozen=True)
class Stock:
    product_id: str
    available: int
    reserved: int
    retired: bool


class Shortfall(Exception):
    """Some item of an order could not be reserved: nothing was (the transaction rolls back)."""


async def threshold(conn: AsyncConnection) -> int:
    value = await conn.scalar(sa.select(config.c.value).where(config.c.name == "stock_low"))
    return DEFAULT_THRESHOLD if value is None else int(value)


async def set_threshold(conn: AsyncConnection, value: int) -> None:
    await conn.execute(sa.delete(config).where(config.c.name == "stock_low"))
    await conn.execute(config.insert().values(name="stock_low", value=value))


async def get_stock(conn: AsyncConnection, product_id: str) -> Stock | None:
    row = (await conn.execute(sa.select(stock).where(stock.c.product_id == product_id))).first()
    return None if row is None else _stock(row)


def _stock(row: sa.Row[Any]) -> Stock:
    return Stock(row.product_id, int(row.available), int(row.reserved), bool(row.retired))


async def announce(uow: UnitOfWork, product_id: str) -> None:
    """StockUpdated after every change, with StockLow / OutOfStock when it applies."""
    current = await get_stock(uow.conn, product_id)
    if current is None:
        return
    available = 0 if current.retired else current.available
    _tell(uow, product_id, available, await threshold(uow.conn))


def _tell(uow: UnitOfWork, product_id: str, available: int, limit: int) -> None:
    uow.publish(StockUpdated(productId=product_id, quantity=available), subject=product_id)
    low, out = warnings_for(available, limit)
    if out:
        uow.publish(OutOfStock(productId=product_id), subject=product_id)
    elif low:
        uow.publish(
            StockLow(productId=product_id, quantity=available, threshold=limit), subject=product_id
        )


async def put_stock(conn: AsyncConnection, product_id: str, available: int) -> None:
    """Create the product's stock, or set what is free to sell (reservations stay held)."""
    now = datetime.now(UTC)
    changed = await conn.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id)
        .values(available=available, retired=False, updated_at=now)
    )
    if changed.rowcount == 0:
        await conn.execute(
            stock.insert().values(
                product_id=product_id,
                available=available,
                reserved=0,
                retired=False,
                updated_at=now,
            )
        )


async def put_stocks(uow: UnitOfWork, product_ids: list[str], available: int) -> None:
    """``put_stock`` for many products in one upsert, then their StockUpdated (and StockLow /
    OutOfStock) as ``announce`` says them: every one now has ``available`` and is not retired."""
    now = datetime.now(UTC)
    insert = postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {
            "product_id": p,
            "available": available,
            "reserved": 0,
            "retired": False,
            "updated_at": now,
        }
        for p in product_ids
    ]
    await uow.conn.execute(
        insert(stock)
        .values(rows)
        .on_conflict_do_update(
            index_elements=[stock.c.product_id],
            set_={"available": available, "retired": False, "updated_at": now},
        )
    )
    limit = await threshold(uow.conn)
    for product_id in product_ids:
        _tell(uow, product_id, available, limit)


async def retire(conn: AsyncConnection, product_id: str) -> bool:
    changed = await conn.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id)
        .values(retired=True, updated_at=datetime.now(UTC))
    )
    return changed.rowcount > 0


async def add_available(conn: AsyncConnection, product_id: str, quantity: int) -> bool:
    changed = await conn.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id)
        .values(available=stock.c.available + quantity, updated_at=datetime.now(UTC))
    )
    return changed.rowcount > 0


async def take(conn: AsyncConnection, product_id: str, quantity: int, *, reserve: bool) -> bool:
    """Take ``quantity`` from what is free to sell, only if that much is there: into the
    reservations (``reserve``), or out of stock altogether (an admin's removal).

    The check and the decrement are ONE conditional UPDATE: the database evaluates
    ``available >= :q`` on the row it is about to change, under that row's write lock
    (PostgreSQL re-checks the condition after waiting for a concurrent writer; SQLite holds the
    database write lock from BEGIN IMMEDIATE). So two orders can never both see the same last
    unit: the loser's UPDATE matches no row (rowcount 0) and it reports a shortfall. A
    read-then-write in Python would oversell under concurrency.
    """
    values: dict[str, Any] = {
        "available": stock.c.available - quantity,
        "updated_at": datetime.now(UTC),
    }
    if reserve:
        values["reserved"] = stock.c.reserved + quantity
    changed = await conn.execute(
        sa.update(stock)
        .where(
            stock.c.product_id == product_id,
            stock.c.retired.is_(False),
            stock.c.available >= quantity,
        )
        .values(values)
    )
    return changed.rowcount == 1


async def unreserve(conn: AsyncConnection, product_id: str, quantity: int, back: bool) -> None:
    """Stop holding ``quantity``: back to available (``back``) or gone for good (deducted)."""
    values: dict[str, Any] = {
        "reserved": sa.case((stock.c.reserved >= quantity, stock.c.reserved - quantity), else_=0),
        "updated_at": datetime.now(UTC),
    }
    if back:
        values["available"] = stock.c.available + quantity
    await conn.execute(sa.update(stock).where(stock.c.product_id == product_id).values(values))


async def reservation(
    conn: AsyncConnection, order_id: str
) -> tuple[Reservation, list[tuple[str, int]]] | None:
    row = (
        await conn.execute(sa.select(reservations).where(reservations.c.order_id == order_id))
    ).first()
    if row is None:
        return None
    return Reservation(row.status), [(str(p), int(q)) for p, q in row.items]


async def record(
    conn: AsyncConnection, order_id: str, status: Reservation, items: list[tuple[str, int]]
) -> None:
    now = datetime.now(UTC)
    await conn.execute(
        reservations.insert().values(
            order_id=order_id,
            status=status.value,
            items=[list(i) for i in items],
            created_at=now,
            updated_at=now,
        )
    )


async def set_status(conn: AsyncConnection, order_id: str, status: Reservation) -> None:
    await conn.execute(
        sa.update(reservations)
        .where(reservations.c.order_id == order_id)
        .values(status=status.value, updated_at=datetime.now(UTC))
    )
