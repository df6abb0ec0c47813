"""inventory's state: stock rows, reservations, and the events every change causes.

The statements of the hot paths are built once, here, and executed with their parameters
(``conn.execute(STATEMENT, {...})``): building one per call (coercions, a fresh cache key
for SQLAlchemy's compiled cache) cost about as much CPU as running it.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import OutOfStock, StockLow, StockUpdated
from mercato.platform.storage.sql import Connection, Database
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.inventory.domain import STEPS, Movement, Reservation, Step, warnings_for
from mercato.services.inventory.tables import config, reservations, stock, stock_movements

DEFAULT_THRESHOLD = 5
# How long a process trusts the threshold it read: another process (a restarted replica with
# other settings) may rewrite it; a write by this process forgets it at once.
THRESHOLD_TTL = 10.0


@dataclass(frozen=True)
class Stock:
    product_id: str
    available: int
    reserved: int
    retired: bool


@dataclass(frozen=True)
class Moved:
    """One change of a product's stock, as stock_movements keeps it."""

    kind: str
    quantity: int
    order_id: str | None
    reason: str | None
    actor: str | None
    at: datetime


class Shortfall(Exception):
    """Some item of an order could not be reserved: nothing was (the transaction rolls back)."""


def _by_id(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return column == sa.bindparam("b_id")


_STOCK = (stock.c.product_id, stock.c.available, stock.c.reserved, stock.c.retired)
_GET_STOCK = sa.select(*_STOCK).where(_by_id(stock.c.product_id))
_GET_THRESHOLD = sa.select(config.c.value).where(config.c.name == "stock_low")
_NOW: sa.BindParameter[datetime] = sa.bindparam("b_now")
_QUANTITY: sa.BindParameter[int] = sa.bindparam("b_quantity")
_UPDATE_STOCK = sa.update(stock).where(_by_id(stock.c.product_id))
_RETIRE = _UPDATE_STOCK.values(retired=True, updated_at=_NOW)
_ADD = _UPDATE_STOCK.values(available=stock.c.available + _QUANTITY, updated_at=_NOW).returning(
    *_STOCK
)
# See add_available(): a restock never adds to a retired product, whoever retires it meanwhile.
_RESTOCK = _ADD.where(stock.c.retired.is_(False))
# See take(): the check and the decrement are one conditional UPDATE.
_TAKE = sa.update(stock).where(
    _by_id(stock.c.product_id), stock.c.retired.is_(False), stock.c.available >= _QUANTITY
)
_RESERVE = _TAKE.values(
    available=stock.c.available - _QUANTITY,
    reserved=stock.c.reserved + _QUANTITY,
    updated_at=_NOW,
).returning(*_STOCK)
_REMOVE = _TAKE.values(available=stock.c.available - _QUANTITY, updated_at=_NOW).returning(*_STOCK)
_HELD_LESS = sa.case((stock.c.reserved >= _QUANTITY, stock.c.reserved - _QUANTITY), else_=0)
_UNRESERVE = {
    True: _UPDATE_STOCK.values(
        reserved=_HELD_LESS, available=stock.c.available + _QUANTITY, updated_at=_NOW
    ).returning(*_STOCK),
    False: _UPDATE_STOCK.values(reserved=_HELD_LESS, updated_at=_NOW).returning(*_STOCK),
}
_RECORD = sa.insert(stock_movements)
_MOVEMENTS = (
    sa.select(
        stock_movements.c.kind,
        stock_movements.c.quantity,
        stock_movements.c.order_id,
        stock_movements.c.reason,
        stock_movements.c.actor,
        stock_movements.c.at,
    )
    .where(_by_id(stock_movements.c.product_id))
    .order_by(stock_movements.c.seq.desc())
    .limit(sa.bindparam("b_limit"))
)
# The two dialects' INSERT with ON CONFLICT (the same interface, no common base class).
_INSERT_RESERVATION: dict[str, Any] = {
    "postgresql": postgresql.insert(reservations),
    "sqlite": sqlite.insert(reservations),
}
_INSERT_STOCK: dict[str, Any] = {
    "postgresql": postgresql.insert(stock),
    "sqlite": sqlite.insert(stock),
}
# A product's first stock row, or nothing (it has one: another event, or replica, came first).
_ADD_PRODUCT = {
    name: insert.on_conflict_do_nothing(index_elements=[stock.c.product_id])
    for name, insert in _INSERT_STOCK.items()
}
# A product's stock row written, or what is free to sell set (reservations stay held).
_PUT = {
    name: insert.on_conflict_do_update(
        index_elements=[stock.c.product_id],
        set_={
            "available": insert.excluded.available,
            "retired": False,
            "updated_at": insert.excluded.updated_at,
        },
    )
    for name, insert in _INSERT_STOCK.items()
}
# The low-stock threshold written, whether a start wrote it before or not.
_SET_THRESHOLD = {
    name: insert.on_conflict_do_update(
        index_elements=[config.c.name], set_={"value": insert.excluded.value}
    )
    for name, insert in (
        ("postgresql", postgresql.insert(config)),
        ("sqlite", sqlite.insert(config)),
    )
}
# A first reservation of an order, or nothing (another delivery of it came first).
_CLAIM = {
    name: insert.on_conflict_do_nothing(index_elements=[reservations.c.order_id])
    for name, insert in _INSERT_RESERVATION.items()
}


def _status(value: Reservation) -> sa.ColumnElement[str]:
    # Written into the statement, not bound: the statuses of a step never change.
    return sa.literal_column(f"'{value.value}'")


def _move(step: Step, dialect: str) -> sa.ClauseElement:
    """See move(): the step as one conditional statement that returns the row it wrote."""
    moves = reservations.c.status.in_([_status(s) for s in step.sources])
    returning = (reservations.c.status, reservations.c["items"])
    if step.tombstone is None:
        return (
            sa.update(reservations)
            .where(_by_id(reservations.c.order_id), moves)
            .values(status=_status(step.target), updated_at=_NOW)
            .returning(*returning)
        )
    insert = _INSERT_RESERVATION[dialect]
    upsert: sa.ClauseElement = insert.on_conflict_do_update(
        index_elements=[reservations.c.order_id],
        set_={"status": _status(step.target), "updated_at": insert.excluded.updated_at},
        where=moves,
    ).returning(*returning)
    return upsert


_MOVES = {(step, dialect): _move(step, dialect) for step in STEPS for dialect in _CLAIM}

# database → (threshold, read at time.monotonic())
_thresholds: weakref.WeakKeyDictionary[Database, tuple[int, float]] = weakref.WeakKeyDictionary()


async def threshold(conn: Connection) -> int:
    """The low-stock threshold, read at most once per THRESHOLD_TTL per database."""
    now = time.monotonic()
    cached = _thresholds.get(conn.db)
    if cached is not None and now - cached[1] < THRESHOLD_TTL:
        return cached[0]
    value = await conn.scalar(_GET_THRESHOLD)
    limit = DEFAULT_THRESHOLD if value is None else int(value)
    _thresholds[conn.db] = (limit, now)
    return limit


async def set_threshold(conn: Connection, value: int) -> None:
    """One upsert: replicas starting together each write it without a unique violation."""
    _thresholds.pop(conn.db, None)
    await conn.execute(_SET_THRESHOLD[conn.dialect.name], {"name": "stock_low", "value": value})


async def get_stock(conn: Connection, product_id: str) -> Stock | None:
    row = (await conn.execute(_GET_STOCK, {"b_id": product_id})).first()
    return None if row is None else _stock(row)


def _stock(row: sa.Row[Any, Any, Any, Any]) -> Stock:
    return Stock(row.product_id, int(row.available), int(row.reserved), bool(row.retired))


async def announce(uow: UnitOfWork, product_id: str) -> None:
    """StockUpdated after every change, with StockLow / OutOfStock when it applies."""
    current = await get_stock(uow.conn, product_id)
    if current is not None:
        await tell(uow, current)


async def tell(uow: UnitOfWork, current: Stock) -> None:
    """``announce`` for a stock row already in hand (a change's RETURNING)."""
    available = 0 if current.retired else current.available
    _tell(uow, current.product_id, available, await threshold(uow.conn))


def _tell(uow: UnitOfWork, product_id: str, available: int, limit: int) -> None:
    uow.publish(StockUpdated(productId=product_id, quantity=available), subject=product_id)
    low, out = warnings_for(available, limit)
    if out:
        uow.publish(OutOfStock(productId=product_id), subject=product_id)
    elif low:
        uow.publish(
            StockLow(productId=product_id, quantity=available, threshold=limit), subject=product_id
        )


def _new_stock(product_id: str, available: int, now: datetime) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "available": available,
        "reserved": 0,
        "retired": False,
        "updated_at": now,
    }


async def add_product(conn: Connection, product_id: str, available: int) -> bool:
    """The product's stock row, unless it has one; False then, and nothing is written. One
    statement (``ON CONFLICT DO NOTHING``): of two replicas adding it at once, the second
    waits for the first and then does nothing."""
    row = _new_stock(product_id, available, datetime.now(UTC))
    return (await conn.execute(_ADD_PRODUCT[conn.dialect.name], row)).rowcount == 1


async def put_stock(conn: Connection, product_id: str, available: int) -> None:
    """Create the product's stock, or set what is free to sell (reservations stay held), in
    one statement (``ON CONFLICT DO UPDATE``), whoever else writes the row at that moment."""
    row = _new_stock(product_id, available, datetime.now(UTC))
    await conn.execute(_PUT[conn.dialect.name], row)


async def put_stocks(uow: UnitOfWork, product_ids: list[str], available: int) -> None:
    """``put_stock`` for many products, then their StockUpdated (and StockLow / OutOfStock)
    as ``announce`` says them: every one now has ``available`` and is not retired."""
    now = datetime.now(UTC)
    rows = [_new_stock(p, available, now) for p in product_ids]
    await uow.conn.execute(_PUT[uow.conn.dialect.name], rows)
    limit = await threshold(uow.conn)
    for product_id in product_ids:
        _tell(uow, product_id, available, limit)


async def retire(conn: Connection, product_id: str) -> bool:
    changed = await conn.execute(_RETIRE, {"b_id": product_id, "b_now": datetime.now(UTC)})
    return changed.rowcount > 0


async def add_available(
    conn: Connection, product_id: str, quantity: int, *, unless_retired: bool = False
) -> Stock | None:
    """Put ``quantity`` back on sale; the stock as it is now (None: no such product, or, with
    ``unless_retired``, a retired one: nothing added). Returned goods go back whatever became
    of the product; a restock checks in the same UPDATE that the product is still sold, so a
    deletion handled at that moment by another replica is waited for and respected."""
    params = {"b_id": product_id, "b_quantity": quantity, "b_now": datetime.now(UTC)}
    row = (await conn.execute(_RESTOCK if unless_retired else _ADD, params)).first()
    return None if row is None else _stock(row)


async def restock(
    uow: UnitOfWork, product_id: str, quantity: int, *, reason: str | None, actor: str | None
) -> Stock | None:
    """An admin's restock: ``quantity`` more available (``add_available``: one UPDATE adding
    to the row, so concurrent restocks and reservations each count), the movement kept,
    StockUpdated told. None when nothing was added (no such product, or a deleted one)."""
    found = await add_available(uow.conn, product_id, quantity, unless_retired=True)
    if found is not None:
        lines = [(product_id, quantity)]
        await record(uow.conn, Movement.RESTOCKED, lines, reason=reason, actor=actor)
        await tell(uow, found)
    return found


async def take(conn: Connection, product_id: str, quantity: int, *, reserve: bool) -> Stock | None:
    """Take ``quantity`` from what is free to sell, only if that much is there: into the
    reservations (``reserve``), or out of stock altogether (an admin's removal). Answers the
    stock as it is after the take, or None when nothing was taken.

    The check and the decrement are ONE conditional UPDATE: the database evaluates
    ``available >= :q`` on the row it is about to change, under that row's write lock
    (PostgreSQL re-checks the condition after waiting for a concurrent writer; SQLite holds the
    database write lock from BEGIN IMMEDIATE). So two orders can never both see the same last
    unit: the loser's UPDATE matches no row (RETURNING gives none) and it reports a shortfall.
    A read-then-write in Python would oversell under concurrency. RETURNING (SQLite ≥ 3.35,
    PostgreSQL) hands back the row the UPDATE wrote, so nothing reads it again.
    """
    params = {"b_id": product_id, "b_quantity": quantity, "b_now": datetime.now(UTC)}
    row = (await conn.execute(_RESERVE if reserve else _REMOVE, params)).first()
    return None if row is None else _stock(row)


async def unreserve(conn: Connection, product_id: str, quantity: int, back: bool) -> Stock | None:
    """Stop holding ``quantity``: back to available (``back``) or gone for good (deducted).
    Answers the stock as it is now (None: no such product)."""
    params = {"b_id": product_id, "b_quantity": quantity, "b_now": datetime.now(UTC)}
    row = (await conn.execute(_UNRESERVE[back], params)).first()
    return None if row is None else _stock(row)


def _row(order_id: str, status: Reservation, items: list[tuple[str, int]]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "order_id": order_id,
        "status": status.value,
        "items": [list(i) for i in items],
        "created_at": now,
        "updated_at": now,
    }


async def claim(conn: Connection, order_id: str, items: list[tuple[str, int]]) -> bool:
    """Write the order's reservation row as RESERVED, unless the order has one already
    (handled before, or a cancellation's tombstone): False then, and nothing is written.

    ``ON CONFLICT DO NOTHING`` on the primary key: a concurrent transaction claiming the same
    order makes PostgreSQL wait for it and then do nothing (SQLite runs them one at a time).
    """
    statement = _CLAIM[conn.dialect.name]
    result = await conn.execute(statement, _row(order_id, Reservation.RESERVED, items))
    return result.rowcount == 1


async def move(conn: Connection, order_id: str, step: Step) -> list[tuple[str, int]] | None:
    """Take ``step`` if the order's reservation is in one of its sources: the reservation's
    lines then; no lines when there was none and this call wrote the step's tombstone. None
    when this call moved nothing: the reservation is in another status (the step, or another,
    was taken already, or the tombstone written), or there is none and the step has no
    tombstone.

    The check and the move are ONE conditional statement (``UPDATE … WHERE status IN (…)
    RETURNING``; with a tombstone, ``INSERT … ON CONFLICT (order_id) DO UPDATE … WHERE status
    IN (…) RETURNING``). PostgreSQL evaluates the status on the row it is about to change,
    under that row's write lock, and again after waiting for a concurrent writer (or for the
    commit of a concurrent insert of the key), so of two transactions taking steps from
    RESERVED at once exactly one gets the row back; the other does nothing. A read and then
    an unconditional write let both act: PaymentFailed and OrderCancelled of one order
    handled at once by two replicas each gave its stock back. SQLite runs them one at a time.
    """
    statement = _MOVES[step, conn.dialect.name]
    params = (
        _row(order_id, step.tombstone, [])
        if step.tombstone is not None
        else {"b_id": order_id, "b_now": datetime.now(UTC)}
    )
    row = (await conn.execute(statement, params)).first()
    if row is not None and step.tombstone is not None and row.status == step.tombstone.value:
        return []
    if row is None or row.status != step.target.value:
        return None
    return [(str(p), int(q)) for p, q in row.items]


async def record(
    conn: Connection,
    kind: Movement,
    lines: list[tuple[str, int]],
    *,
    order_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> None:
    """Keep the movements of one change (a line per product), in the change's transaction:
    one statement, whatever the number of lines."""
    if not lines:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "product_id": product_id,
            "kind": kind.value,
            "quantity": quantity,
            "order_id": order_id,
            "reason": reason,
            "actor": actor,
            "at": now,
        }
        for product_id, quantity in lines
    ]
    await conn.execute(_RECORD, rows)


async def movements(conn: Connection, product_id: str, limit: int) -> list[Moved]:
    """The product's last ``limit`` movements, newest first."""
    found = await conn.execute(_MOVEMENTS, {"b_id": product_id, "b_limit": limit})
    return [
        Moved(r.kind, int(r.quantity), r.order_id, r.reason, r.actor, r.at) for r in found.all()
    ]
