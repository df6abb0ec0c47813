"""Drafts: orders being put together item by item before they are placed (the WDM API's
orders before checkout).

A draft is not an order: it publishes nothing and no order list shows it. Placing it makes the
order through ``orders.place_order`` (CreateOrder's path) and marks the draft placed in the
same transaction, so a repeated placing answers the order the first one made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.auth import Caller
from mercato.platform.storage.sql import Connection
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.order import orders, store
from mercato.services.order.domain import CannotChange, InvalidOrder, Line, Order, merge_lines
from mercato.services.order.orders import OrderExists
from mercato.services.order.store import Stored
from mercato.services.order.tables import order_drafts
from mercato.services.order.tables import orders as orders_table

CHUNK = 500  # ids per IN (...) query: well under SQLite's limit on bound parameters


class NoSuchDraft(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Draft:
    order_id: str
    user_id: str
    currency: str
    lines: tuple[Line, ...]
    placed: bool

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


def of_order(order: Order) -> Draft:
    """An order placed without a draft, seen as a placed draft."""
    return Draft(order.order_id, order.user_id, order.currency, order.lines, placed=True)


def with_item(draft: Draft, product_id: str, quantity: int, price: Decimal, currency: str) -> Draft:
    """One more item; the quantity of one already there adds up. A line keeps the price it was
    first added at (one price per order line, as in an order)."""
    if draft.placed:
        raise CannotChange("the order is already checked out")
    if draft.lines and currency != draft.currency:
        raise InvalidOrder(f"the order is in {draft.currency}, {product_id} in {currency}")
    known = {line.product_id: line.price for line in draft.lines}
    wanted = [(x.product_id, x.quantity, x.price) for x in draft.lines]
    wanted.append((product_id, quantity, known.get(product_id, price)))
    return replace(draft, currency=currency, lines=merge_lines(wanted))


def _items_json(lines: Iterable[Line]) -> str:
    return json.dumps(
        [{"productId": x.product_id, "quantity": x.quantity, "price": str(x.price)} for x in lines]
    )


def _draft(row: Any) -> Draft:
    lines = tuple(
        Line(i["productId"], int(i["quantity"]), Decimal(i["price"])) for i in json.loads(row.items)
    )
    return Draft(row.id, row.user_id, row.currency, lines, bool(row.placed))


def _row(draft: Draft) -> dict[str, Any]:
    now = orders.now_utc()
    return {
        "id": draft.order_id,
        "user_id": draft.user_id,
        "currency": draft.currency,
        "items": _items_json(draft.lines),
        "placed": draft.placed,
        "created_at": now,
        "updated_at": now,
    }


async def load(conn: Connection, order_id: str, *, lock: bool = False) -> Draft | None:
    query = select(order_drafts).where(order_drafts.c.id == order_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return _draft(row) if row is not None else None


async def _own(conn: Connection, caller: Caller, order_id: str) -> Draft:
    """The caller's draft, locked (someone else's is not found, as with orders)."""
    draft = await load(conn, order_id, lock=True)
    if draft is None or not caller.may_act_for(draft.user_id):
        raise NoSuchDraft(order_id)
    return draft


async def create(uow: UnitOfWork, order_id: str, user_id: str) -> Draft:
    if await load(uow.conn, order_id) or await store.load(uow.conn, order_id):
        raise OrderExists(order_id)
    draft = Draft(order_id, user_id, "USD", (), placed=False)
    await uow.conn.execute(order_drafts.insert().values(**_row(draft)))
    return draft


async def add_item(
    uow: UnitOfWork,
    caller: Caller,
    order_id: str,
    item: tuple[str, int, Decimal],
    currency: str,
) -> Draft:
    draft = with_item(await _own(uow.conn, caller, order_id), *item, currency)
    await uow.conn.execute(
        update(order_drafts)
        .where(order_drafts.c.id == order_id)
        .values(
            currency=draft.currency,
            items=_items_json(draft.lines),
            updated_at=orders.now_utc(),
        )
    )
    return draft


async def place(
    uow: UnitOfWork,
    caller: Caller,
    order_id: str,
    *,
    payment: PaymentMethod | None,
    shipping_address: Address | None,
) -> Stored:
    """The draft's order: placed now, or the one an earlier placing made."""
    draft = await _own(uow.conn, caller, order_id)
    if draft.placed:
        placed = await store.load(uow.conn, order_id)
        assert placed is not None  # orders are never deleted
        return placed
    stored = await orders.place_order(
        uow,
        order_id,
        draft.user_id,
        [(x.product_id, x.quantity, x.price) for x in draft.lines],
        currency=draft.currency,
        payment=payment,
        shipping_address=shipping_address,
    )
    await uow.conn.execute(
        update(order_drafts)
        .where(order_drafts.c.id == order_id)
        .values(placed=True, updated_at=orders.now_utc())
    )
    return stored


async def create_many(uow: UnitOfWork, wanted: Sequence[Draft]) -> tuple[int, int]:
    """Write these drafts, replacing drafts of the same id not yet placed; an id already
    placed (or an order's) is kept as it is, since an order cannot be undone.
    Returns (written, kept)."""
    ids = [d.order_id for d in wanted]
    if len(set(ids)) != len(ids):
        raise InvalidOrder("an order id is listed twice")
    kept: set[str] = set()
    replaced: list[str] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = await uow.conn.execute(
            select(order_drafts.c.id, order_drafts.c.placed).where(order_drafts.c.id.in_(chunk))
        )
        for row in rows:
            if row.placed:
                kept.add(row.id)
            else:
                replaced.append(row.id)
        kept.update(
            await uow.conn.scalars(select(orders_table.c.id).where(orders_table.c.id.in_(chunk)))
        )
    for start in range(0, len(replaced), CHUNK):
        chunk = replaced[start : start + CHUNK]
        await uow.conn.execute(order_drafts.delete().where(order_drafts.c.id.in_(chunk)))
    fresh = [_row(d) for d in wanted if d.order_id not in kept]
    if fresh:
        await uow.conn.execute(order_drafts.insert(), fresh)
    return len(fresh), len(kept)
