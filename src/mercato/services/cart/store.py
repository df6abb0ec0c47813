"""cart's use cases over its tables: the active cart and its lines, checkout, abandonment.

Every change to a cart happens with the cart's row locked, so two requests on one cart cannot
both read "3 in the cart" and write their own sum. The lock is taken by the request's first
statement, an UPDATE of the active cart's row (its ``touched_at``, or its checkout), which holds
the row until commit on PostgreSQL as ``FOR UPDATE`` would; SQLite serializes writers anyway.
A request that is then refused rolls back, that update included. The lines are read after the
lock, in a statement of their own: on PostgreSQL a statement that waited for the lock sees
what the lock's holder committed only from its next statement on.

The statements of the hot paths are built once, here, with bind parameters: building a
statement per call (coercions, cache keys) costs more CPU than running it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import (
    Address,
    CartAbandoned,
    CartCheckedOut,
    CartItem,
    CartItemAdded,
    CartItemRemoved,
    CartUpdated,
    PaymentMethod,
    PricedItem,
)
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.cart import domain
from mercato.services.cart.domain import CannotSell, CartChanged, Line, NotInCart
from mercato.services.cart.tables import ACTIVE, When, cart_items, carts, product_prices


@dataclass(frozen=True)
class CartState:
    cart_id: str | None  # None: the user has no cart yet
    user_id: str
    lines: list[Line]
    touched_at: datetime | None


@dataclass(frozen=True)
class Priced:
    """A product's unit price as the catalog stated it at ``as_of``."""

    product_id: str
    name: str
    price: Decimal
    currency: str
    as_of: datetime


_ACTIVE = (carts.c.user_id == bindparam("b_user"), ACTIVE)
_NOW = bindparam("b_now", type_=When)
# The user changed the cart: lock it and start its idle clock again; its id (none: no cart).
_TOUCH = (
    update(carts).where(*_ACTIVE).values(touched_at=_NOW, abandoned_at=None).returning(carts.c.id)
)


def _opening(insert: Any) -> Any:
    """A new active cart, or, where the user has one (the one-active-cart index), that one
    locked and touched as ``_TOUCH`` does: one statement either way, and its id. A request
    opening the user's cart at the same moment is waited for (PostgreSQL) and its cart is
    the one touched."""
    return insert.on_conflict_do_update(
        index_elements=[carts.c.user_id],
        index_where=ACTIVE,
        set_={"touched_at": insert.excluded.touched_at, "abandoned_at": None},
    ).returning(carts.c.id)


_OPEN = {
    "postgresql": _opening(postgresql.insert(carts)),
    "sqlite": _opening(sqlite.insert(carts)),
}
_LINES = (
    select(cart_items)
    .where(cart_items.c.cart_id == bindparam("cart_id"))
    .order_by(cart_items.c.added_at, cart_items.c.product_id)
)
# The active cart and its lines in one read (a cart without lines: one row of NULL lines).
_VIEW = (
    select(
        carts.c.id,
        carts.c.touched_at,
        cart_items.c.product_id,
        cart_items.c.name,
        cart_items.c.quantity,
        cart_items.c.price,
        cart_items.c.currency,
    )
    .select_from(carts.outerjoin(cart_items, cart_items.c.cart_id == carts.c.id))
    .where(*_ACTIVE)
    .order_by(cart_items.c.added_at, cart_items.c.product_id)
)
_ADD_LINE = cart_items.insert()
_KNOWN_PRICE = select(product_prices).where(product_prices.c.product_id == bindparam("product_id"))
# The product's row held until commit: shared by requests pricing a line from it, exclusively
# by the events that change it.
_HOLD_PRICE = {True: _KNOWN_PRICE.with_for_update(read=True), False: _KNOWN_PRICE.with_for_update()}
_FIRST_PRICE = {
    "postgresql": postgresql.insert(product_prices).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(product_prices).on_conflict_do_nothing(),
}
_THE_LINE = (
    cart_items.c.cart_id == bindparam("b_cart"),
    cart_items.c.product_id == bindparam("b_product"),
)
_SET_QUANTITY = update(cart_items).where(*_THE_LINE).values(quantity=bindparam("b_quantity"))
_SET_PRICED_QUANTITY = _SET_QUANTITY.values(
    name=bindparam("b_name"),
    price=bindparam("b_price"),
    currency=bindparam("b_currency"),
    price_as_of=bindparam("b_as_of"),
)
_DROP_LINE = delete(cart_items).where(*_THE_LINE)
_CHECK_OUT = (
    update(carts)
    .where(*_ACTIVE)
    .values(
        status="checked_out", order_id=bindparam("b_order"), checked_out_at=_NOW, touched_at=_NOW
    )
    .returning(carts.c.id)
)


def _line(row: Any) -> Line:
    return Line(row.product_id, row.name, row.quantity, Decimal(row.price), row.currency)


async def _lines(conn: Connection, cart_id: str) -> Sequence[Row[Any]]:
    return (await conn.execute(_LINES, {"cart_id": cart_id})).all()


async def view(conn: Connection, user_id: str) -> CartState:
    rows = (await conn.execute(_VIEW, {"b_user": user_id})).all()
    if not rows:
        return CartState(None, user_id, [], None)
    lines = [_line(r) for r in rows if r.product_id is not None]
    return CartState(rows[0].id, user_id, lines, rows[0].touched_at)


async def _touch(uow: UnitOfWork, user_id: str, now: datetime) -> str | None:
    """Lock and touch the user's active cart; its id, None if the user has none."""
    cart_id = (await uow.conn.execute(_TOUCH, {"b_user": user_id, "b_now": now})).scalar()
    return None if cart_id is None else str(cart_id)


async def _open(uow: UnitOfWork, user_id: str, now: datetime) -> tuple[str, Sequence[Row[Any]]]:
    """The user's active cart, locked and touched (opened if there is none), and its lines."""
    new = new_id()
    cart_id = (
        await uow.conn.execute(
            _OPEN[uow.conn.dialect.name],
            {
                "id": new,
                "user_id": user_id,
                "status": "active",
                "created_at": now,
                "touched_at": now,
            },
        )
    ).scalar_one()
    if cart_id == new:  # opened: no lines yet
        return cart_id, []
    return str(cart_id), await _lines(uow.conn, cart_id)


async def _newest(conn: Connection, priced: Priced) -> Priced:
    """The catalog's answer, unless an event has told us something newer since.

    The product's row is held (shared) until commit, and written from the answer when cart
    has none: a deletion or a new price that another replica handles meanwhile waits for the
    line being written here, and then finds it (``_remember``). A plain read let each miss
    the other: the deleted product stayed in the cart."""
    first = {
        "product_id": priced.product_id,
        "price": str(priced.price),
        "currency": priced.currency,
        "name": priced.name,
        "as_of": priced.as_of,
    }
    known = await _hold(conn, first, shared=True)
    if known is None:
        return priced
    if known.deleted_at is not None:
        raise CannotSell(f"product {priced.product_id} is no longer sold")
    if known.price is None or known.as_of <= priced.as_of:
        return priced
    return Priced(
        priced.product_id,
        known.name or priced.name,
        Decimal(known.price),
        known.currency or priced.currency,
        known.as_of,
    )


async def _hold(conn: Connection, first: dict[str, Any], *, shared: bool = False) -> Any:
    """The product's row in ``product_prices``, held until commit (``_HOLD_PRICE``); None when
    cart had none and ``first`` was inserted as its first row (uncommitted, so held as well).
    A product has no row to lock before its first: ``ON CONFLICT DO NOTHING`` waits for
    another transaction inserting it at the same moment, and then its row is read."""
    statement = _HOLD_PRICE[shared]
    key = {"product_id": first["product_id"]}
    known = (await conn.execute(statement, key)).first()
    if known is not None:
        return known
    if (await conn.execute(_FIRST_PRICE[conn.dialect.name], first)).rowcount == 1:
        return None
    return (await conn.execute(statement, key)).one()


def publish_updated(uow: UnitOfWork, state: CartState) -> None:
    assert state.cart_id is not None
    items = [
        PricedItem(productId=x.product_id, quantity=x.quantity, price=x.price) for x in state.lines
    ]
    uow.publish(
        CartUpdated(
            userId=state.user_id,
            cartId=state.cart_id,
            items=items,
            total=domain.total_of(state.lines),
        ),
        subject=state.cart_id,
    )


async def add_item(
    uow: UnitOfWork, user_id: str, priced: Priced, quantity: int, now: datetime
) -> CartState:
    cart_id, rows = await _open(uow, user_id, now)
    lines = [_line(r) for r in rows]
    priced = await _newest(uow.conn, priced)
    product_id = priced.product_id
    index = next((i for i, r in enumerate(rows) if r.product_id == product_id), None)
    total = domain.added(lines[index] if index is not None else None, quantity)
    domain.check_room(lines, product_id)
    domain.check_currency(lines, priced.currency, product_id)
    line = Line(product_id, priced.name, total, priced.price, priced.currency)
    price = {"name": priced.name, "price": str(priced.price), "currency": priced.currency}
    if index is None:
        await uow.conn.execute(
            _ADD_LINE,
            {
                "cart_id": cart_id,
                "product_id": product_id,
                "quantity": total,
                "added_at": now,
                "price_as_of": priced.as_of,
                **price,
            },
        )
        # The lines are in the order they were added (then by product id).
        lines.insert(
            bisect_right([(r.added_at, r.product_id) for r in rows], (now, product_id)),
            line,
        )
    else:
        keys = {"b_cart": cart_id, "b_product": product_id, "b_quantity": total}
        if priced.as_of >= rows[index].price_as_of:
            await uow.conn.execute(
                _SET_PRICED_QUANTITY,
                {**keys, **{f"b_{k}": v for k, v in price.items()}, "b_as_of": priced.as_of},
            )
        else:
            await uow.conn.execute(_SET_QUANTITY, keys)
            line = replace(lines[index], quantity=total)
        lines[index] = line
    uow.publish(
        CartItemAdded(userId=user_id, productId=product_id, quantity=quantity),
        subject=cart_id,
    )
    state = CartState(cart_id, user_id, lines, now)
    publish_updated(uow, state)
    return state


async def _change_line(
    uow: UnitOfWork, user_id: str, product_id: str, now: datetime
) -> tuple[str, list[Line], int]:
    """The user's active cart, locked and touched, its lines, and where ``product_id`` is."""
    cart_id = await _touch(uow, user_id, now)
    lines = [_line(r) for r in await _lines(uow.conn, cart_id)] if cart_id is not None else []
    index = next((i for i, x in enumerate(lines) if x.product_id == product_id), None)
    if cart_id is None or index is None:
        raise NotInCart(f"product {product_id} is not in the cart")
    return cart_id, lines, index


async def set_quantity(
    uow: UnitOfWork, user_id: str, product_id: str, quantity: int, now: datetime
) -> CartState:
    domain.check_quantity(quantity)
    cart_id, lines, index = await _change_line(uow, user_id, product_id, now)
    await uow.conn.execute(
        _SET_QUANTITY, {"b_cart": cart_id, "b_product": product_id, "b_quantity": quantity}
    )
    lines[index] = replace(lines[index], quantity=quantity)
    state = CartState(cart_id, user_id, lines, now)
    publish_updated(uow, state)
    return state


async def remove_item(uow: UnitOfWork, user_id: str, product_id: str, now: datetime) -> CartState:
    cart_id, lines, index = await _change_line(uow, user_id, product_id, now)
    await uow.conn.execute(_DROP_LINE, {"b_cart": cart_id, "b_product": product_id})
    del lines[index]
    uow.publish(CartItemRemoved(userId=user_id, productId=product_id), subject=cart_id)
    state = CartState(cart_id, user_id, lines, now)
    publish_updated(uow, state)
    return state


async def checkout(
    uow: UnitOfWork,
    user_id: str,
    confirmed: dict[str, Priced],
    payment: domain.Payment,
    address: domain.Address,
    now: datetime,
) -> str:
    """Close the active cart as an order; publish CartCheckedOut; the new order's id.

    ``confirmed`` is the catalog's answer for the lines read before this transaction; if the
    cart changed since, the client retries (nothing is written).
    """
    order_id = new_id()
    # Closed first, which locks the cart; a refusal below rolls the closing back.
    closing = {"b_user": user_id, "b_order": order_id, "b_now": now}
    cart_id = (await uow.conn.execute(_CHECK_OUT, closing)).scalar()
    rows = await _lines(uow.conn, cart_id) if cart_id is not None else []
    if cart_id is None or not rows:
        raise CannotSell("the cart is empty")
    if {r.product_id for r in rows} != set(confirmed):
        raise CartChanged("the cart changed during checkout; retry")
    lines = [
        Line(
            r.product_id,
            r.name,
            r.quantity,
            confirmed[r.product_id].price,
            confirmed[r.product_id].currency,
        )
        for r in rows
    ]
    currency = domain.currency_of(lines)
    uow.publish(
        CartCheckedOut(
            userId=user_id,
            cartId=cart_id,
            orderId=order_id,
            items=[
                CartItem(productId=x.product_id, quantity=x.quantity, price=x.price) for x in lines
            ],
            currency=currency,
            payment=PaymentMethod(
                method=payment.method,  # type: ignore[arg-type]
                token=payment.token,
                last4=payment.last4,
            ),
            shippingAddress=Address(
                name=address.name,
                line1=address.line1,
                line2=address.line2,
                city=address.city,
                postalCode=address.postal_code,
                country=address.country,
            ),
        ),
        subject=cart_id,
        correlationid=order_id,
    )
    return order_id


# -- what the catalog's events change ------------------------------------------------------
async def _remember(uow: UnitOfWork, product_id: str, as_of: datetime, **values: Any) -> bool:
    """Record what an event says about a product; False if a newer event already did. The
    product's row is held exclusively while this decides (``_hold``), so the catalog's events
    of one product handled at once by two replicas take turns, and wait for lines being added."""
    known = await _hold(uow.conn, {"product_id": product_id, "as_of": as_of, **values})
    if known is None:
        return True
    if known.deleted_at is not None or known.as_of > as_of:
        return False
    await uow.conn.execute(
        update(product_prices)
        .where(product_prices.c.product_id == product_id)
        .values(as_of=as_of, **{k: v for k, v in values.items() if v is not None})
    )
    return True


async def _active_carts_holding(uow: UnitOfWork, product_id: str) -> list[Any]:
    query = (
        select(carts.c.id, carts.c.user_id)
        .join(cart_items, cart_items.c.cart_id == carts.c.id)
        .where(ACTIVE, cart_items.c.product_id == product_id)
        .order_by(carts.c.id)
    )
    return list((await uow.conn.execute(query)).all())


async def reprice(
    uow: UnitOfWork,
    product_id: str,
    as_of: datetime,
    price: Decimal | None,
    currency: str | None,
    name: str | None,
) -> int:
    """Bring the product's lines in active carts to the catalog's new price; carts changed."""
    values = {
        "price": str(price) if price is not None else None,
        "currency": currency,
        "name": name,
    }
    if not await _remember(uow, product_id, as_of, **values):
        return 0
    changes: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    if not changes:
        return 0
    if price is not None:
        changes["price_as_of"] = as_of
    changed = 0
    for cart in await _active_carts_holding(uow, product_id):
        result = await uow.conn.execute(
            update(cart_items)
            .where(
                cart_items.c.cart_id == cart.id,
                cart_items.c.product_id == product_id,
                cart_items.c.price_as_of <= as_of,
            )
            .values(**changes)
        )
        if result.rowcount:
            changed += 1
            publish_updated(uow, await view(uow.conn, cart.user_id))
    return changed


async def retire(uow: UnitOfWork, product_id: str, as_of: datetime) -> int:
    """The product is gone: take it out of every active cart; carts changed."""
    await _remember(uow, product_id, as_of)
    await uow.conn.execute(
        update(product_prices)
        .where(product_prices.c.product_id == product_id)
        .values(deleted_at=as_of)
    )
    holders = await _active_carts_holding(uow, product_id)
    for cart in holders:
        await uow.conn.execute(
            delete(cart_items).where(
                cart_items.c.cart_id == cart.id, cart_items.c.product_id == product_id
            )
        )
        uow.publish(CartItemRemoved(userId=cart.user_id, productId=product_id), subject=cart.id)
        publish_updated(uow, await view(uow.conn, cart.user_id))
    return len(holders)


# -- abandonment -----------------------------------------------------------------------------
async def abandon_idle(uow: UnitOfWork, now: datetime, after: timedelta, limit: int = 100) -> int:
    """Publish CartAbandoned once for each cart with items left untouched for ``after``."""
    idle = (
        select(carts.c.id, carts.c.user_id)
        .where(
            ACTIVE,
            carts.c.abandoned_at.is_(None),
            carts.c.touched_at <= now - after,
            exists().where(cart_items.c.cart_id == carts.c.id),
        )
        .order_by(carts.c.touched_at)
        .limit(limit)
    )
    count = 0
    for cart in (await uow.conn.execute(idle)).all():
        # Conditional, so that of two replicas scanning at once only one publishes.
        claimed = await uow.conn.execute(
            update(carts)
            .where(carts.c.id == cart.id, carts.c.abandoned_at.is_(None), ACTIVE)
            .values(abandoned_at=now)
        )
        if claimed.rowcount:
            uow.publish(CartAbandoned(userId=cart.user_id, cartId=cart.id), subject=cart.id)
            count += 1
    return count
