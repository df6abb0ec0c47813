"""cart's use cases over its tables: the active cart and its lines, checkout, abandonment.

Every change to a cart happens with the cart's row locked (``FOR UPDATE`` on PostgreSQL;
SQLite serializes writers anyway), so two requests on one cart cannot both read "3 in the
cart" and write their own sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

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
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.cart import domain
from mercato.services.cart.domain import CannotSell, CartChanged, Line, NotInCart
from mercato.services.cart.tables import cart_items, carts, product_prices


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


def _line(row: Any) -> Line:
    return Line(row.product_id, row.name, row.quantity, Decimal(row.price), row.currency)


async def _active(conn: AsyncConnection, user_id: str, *, lock: bool = False) -> Any:
    query = select(carts).where(carts.c.user_id == user_id, carts.c.status == "active")
    return (await conn.execute(query.with_for_update() if lock else query)).first()


async def _rows(conn: AsyncConnection, cart_id: str) -> list[Any]:
    query = (
        select(cart_items)
        .where(cart_items.c.cart_id == cart_id)
        .order_by(cart_items.c.added_at, cart_items.c.product_id)
    )
    return list((await conn.execute(query)).all())


async def view(conn: AsyncConnection, user_id: str) -> CartState:
    cart = await _active(conn, user_id)
    if cart is None:
        return CartState(None, user_id, [], None)
    lines = [_line(r) for r in await _rows(conn, cart.id)]
    return CartState(cart.id, user_id, lines, utc(cart.touched_at))


async def _open(uow: UnitOfWork, user_id: str, now: datetime) -> str:
    cart = await _active(uow.conn, user_id, lock=True)
    if cart is not None:
        return str(cart.id)
    cart_id = new_id()
    try:
        async with uow.conn.begin_nested():
            await uow.conn.execute(
                carts.insert().values(
                    id=cart_id, user_id=user_id, status="active", created_at=now, touched_at=now
                )
            )
    except IntegrityError:
        # Another request opened the user's cart at the same moment (PostgreSQL; SQLite
        # serializes writers): the one-active-cart index kept a second out, so use theirs.
        cart = await _active(uow.conn, user_id, lock=True)
        if cart is None:
            raise
        return str(cart.id)
    return cart_id


async def _touch(uow: UnitOfWork, cart_id: str, now: datetime) -> None:
    """The user changed the cart: its idle clock starts again."""
    await uow.conn.execute(
        update(carts).where(carts.c.id == cart_id).values(touched_at=now, abandoned_at=None)
    )


async def _newest(conn: AsyncConnection, priced: Priced) -> Priced:
    """The catalog's answer, unless an event has told us something newer since."""
    known = (
        await conn.execute(
            select(product_prices).where(product_prices.c.product_id == priced.product_id)
        )
    ).first()
    if known is None:
        return priced
    if known.deleted_at is not None:
        raise CannotSell(f"product {priced.product_id} is no longer sold")
    if known.price is None or utc(known.as_of) <= priced.as_of:
        return priced
    return Priced(
        priced.product_id,
        known.name or priced.name,
        Decimal(known.price),
        known.currency or priced.currency,
        utc(known.as_of),
    )


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
    cart_id = await _open(uow, user_id, now)
    rows = {r.product_id: r for r in await _rows(uow.conn, cart_id)}
    lines = [_line(r) for r in rows.values()]
    priced = await _newest(uow.conn, priced)
    existing = rows.get(priced.product_id)
    total = domain.added(_line(existing) if existing else None, quantity)
    domain.check_room(lines, priced.product_id)
    domain.check_currency(lines, priced.currency, priced.product_id)
    price = {
        "name": priced.name,
        "price": str(priced.price),
        "currency": priced.currency,
        "price_as_of": priced.as_of,
    }
    if existing is None:
        await uow.conn.execute(
            cart_items.insert().values(
                cart_id=cart_id,
                product_id=priced.product_id,
                quantity=total,
                added_at=now,
                **price,
            )
        )
    else:
        fresher = priced.as_of >= utc(existing.price_as_of)
        await uow.conn.execute(
            update(cart_items)
            .where(cart_items.c.cart_id == cart_id, cart_items.c.product_id == priced.product_id)
            .values(quantity=total, **(price if fresher else {}))
        )
    await _touch(uow, cart_id, now)
    uow.publish(
        CartItemAdded(userId=user_id, productId=priced.product_id, quantity=quantity),
        subject=cart_id,
    )
    state = await view(uow.conn, user_id)
    publish_updated(uow, state)
    return state


async def _line_cart(uow: UnitOfWork, user_id: str, product_id: str) -> str:
    cart = await _active(uow.conn, user_id, lock=True)
    found = cart is not None and await uow.conn.scalar(
        select(
            exists().where(cart_items.c.cart_id == cart.id, cart_items.c.product_id == product_id)
        )
    )
    if not found:
        raise NotInCart(f"product {product_id} is not in the cart")
    return str(cart.id)


async def set_quantity(
    uow: UnitOfWork, user_id: str, product_id: str, quantity: int, now: datetime
) -> CartState:
    domain.check_quantity(quantity)
    cart_id = await _line_cart(uow, user_id, product_id)
    await uow.conn.execute(
        update(cart_items)
        .where(cart_items.c.cart_id == cart_id, cart_items.c.product_id == product_id)
        .values(quantity=quantity)
    )
    await _touch(uow, cart_id, now)
    state = await view(uow.conn, user_id)
    publish_updated(uow, state)
    return state


async def remove_item(uow: UnitOfWork, user_id: str, product_id: str, now: datetime) -> CartState:
    cart_id = await _line_cart(uow, user_id, product_id)
    await uow.conn.execute(
        delete(cart_items).where(
            cart_items.c.cart_id == cart_id, cart_items.c.product_id == product_id
        )
    )
    await _touch(uow, cart_id, now)
    uow.publish(CartItemRemoved(userId=user_id, productId=product_id), subject=cart_id)
    state = await view(uow.conn, user_id)
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
    cart = await _active(uow.conn, user_id, lock=True)
    rows = await _rows(uow.conn, cart.id) if cart is not None else []
    if cart is None or not rows:
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
    order_id = new_id()
    await uow.conn.execute(
        update(carts)
        .where(carts.c.id == cart.id)
        .values(status="checked_out", order_id=order_id, checked_out_at=now, touched_at=now)
    )
    uow.publish(
        CartCheckedOut(
            userId=user_id,
            cartId=cart.id,
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
        subject=cart.id,
        correlationid=order_id,
    )
    return order_id


# -- what the catalog's events change ------------------------------------------------------
async def _remember(uow: UnitOfWork, product_id: str, as_of: datetime, **values: Any) -> bool:
    """Record what an event says about a product; False if a newer event already did."""
    known = (
        await uow.conn.execute(
            select(product_prices)
            .where(product_prices.c.product_id == product_id)
            .with_for_update()
        )
    ).first()
    if known is None:
        await uow.conn.execute(
            product_prices.insert().values(product_id=product_id, as_of=as_of, **values)
        )
        return True
    if known.deleted_at is not None or utc(known.as_of) > as_of:
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
        .where(carts.c.status == "active", cart_items.c.product_id == product_id)
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
            carts.c.status == "active",
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
            .where(
                carts.c.id == cart.id, carts.c.abandoned_at.is_(None), carts.c.status == "active"
            )
            .values(abandoned_at=now)
        )
        if claimed.rowcount:
            uow.publish(CartAbandoned(userId=cart.user_id, cartId=cart.id), subject=cart.id)
            count += 1
    return count
