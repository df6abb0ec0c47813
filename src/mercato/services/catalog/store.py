"""Reading and writing products; every change publishes its event in the same transaction."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from mercato.contracts.events import ProductCreated, ProductDeleted, ProductUpdated
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.catalog.domain import Page, search_text
from mercato.services.catalog.tables import products, version


class ProductNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    description: str
    category: str
    price: Decimal
    currency: str
    active: bool
    available: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewProduct:
    name: str
    description: str
    category: str
    price: Decimal
    currency: str
    quantity: int
    active: bool = True


# What a Product is built from: a search or a read fetches these columns only (each one more
# is a conversion per row; the search text and the stock time are not shown, and the deletion
# time only where deleted products are told apart).
SHOWN = (
    products.c.id,
    products.c.name,
    products.c.description,
    products.c.category,
    products.c.price,
    products.c.currency,
    products.c.active,
    products.c.available,
    products.c.created_at,
    products.c.updated_at,
)


def _product(row: sa.Row[Any]) -> Product:
    return Product(
        product_id=row.id,
        name=row.name,
        description=row.description,
        category=row.category,
        price=Decimal(row.price).quantize(Decimal("0.01")),
        currency=row.currency,
        active=row.active,
        available=row.available,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_ORDER = {
    "name": (products.c.name.asc(), products.c.id.asc()),
    "-name": (products.c.name.desc(), products.c.id.asc()),
    "price": (products.c.price.asc(), products.c.id.asc()),
    "-price": (products.c.price.desc(), products.c.id.asc()),
    "newest": (products.c.created_at.desc(), products.c.id.desc()),
    "oldest": (products.c.created_at.asc(), products.c.id.asc()),
}


class _position(FunctionElement[int]):
    """``_position(text, part)``: where ``part`` starts in ``text`` (from 1), 0 if nowhere.

    Not ``text LIKE '%' || part || '%'``: SQLite plans a LIKE for the pattern bound to it (in
    case an index could serve its prefix), so it prepared the search again at every run, which
    took a third of the search's time in SQLite."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_position)
def _strpos(element: _position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _instr(element: _position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


def _matching(words: int, category: bool, include_inactive: bool) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [products.c.deleted_at.is_(None)]
    if not include_inactive:
        where.append(products.c.active.is_(True))
    for i in range(words):  # every word, in the name or the description
        word = sa.bindparam(f"word{i}", type_=sa.String)
        where.append(_position(products.c.search_text, word) > 0)
    if category:
        where.append(products.c.category == sa.bindparam("category", type_=sa.String))
    return where


@functools.lru_cache(maxsize=256)
def _search(
    words: int, category: bool, include_inactive: bool, sort: str
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """A search's statements, built once per shape: (count, one page with the count)."""
    where = _matching(words, category, include_inactive)
    count = sa.select(sa.func.count()).where(*where)
    page = (
        sa.select(*SHOWN, count.scalar_subquery().correlate(None).label("total"))
        .where(*where)
        .order_by(*_ORDER[sort])
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .offset(sa.bindparam("offset", type_=sa.Integer))
    )
    return count, page


async def search(
    conn: Connection,
    text: str,
    category: str,
    sort: str,
    page: Page,
    include_inactive: bool = False,
) -> tuple[list[Product], int]:
    """Undeleted (and active) products matching ``text`` (name or description) and ``category``."""
    words = text.split()
    count, query = _search(len(words), bool(category), include_inactive, sort)
    values: dict[str, Any] = {f"word{i}": w.lower() for i, w in enumerate(words)}
    if category:
        values["category"] = category
    rows = (await conn.execute(query, {**values, "limit": page.size, "offset": page.offset})).all()
    if rows:
        total = rows[0].total  # counted in the same statement, so the same snapshot
    elif page.offset:
        total = (await conn.execute(count, values)).scalar_one()  # a page past the end
    else:
        total = 0
    return [_product(r) for r in rows], int(total)


_VERSION = sa.select(version.c.version).where(version.c.id == 1)


async def current_version(conn: Connection) -> int:
    """The catalog's version: it moves with every change to a product (triggers, in the
    changing transaction). Read it before a page: the page is then at least that recent, so
    a page kept with it is the same page while the version stays."""
    return int((await conn.execute(_VERSION)).scalar_one())


_GET = sa.select(*SHOWN).where(
    products.c.id == sa.bindparam("product_id"), products.c.deleted_at.is_(None)
)
_BY_IDS = sa.select(*SHOWN, products.c.deleted_at).where(
    products.c.id.in_(sa.bindparam("ids", expanding=True))
)
_DESCRIPTIONS = sa.select(products.c.id, products.c.description).where(
    products.c.id.in_(sa.bindparam("ids", expanding=True))
)


async def get(conn: Connection, product_id: str) -> Product:
    row = (await conn.execute(_GET, {"product_id": product_id})).first()
    if row is None:
        raise ProductNotFound(product_id)
    return _product(row)


async def look_up(conn: Connection, product_ids: list[str]) -> tuple[dict[str, Product], set[str]]:
    """The live (undeleted) products among ``product_ids``, and the ids among them that ever
    existed (deleted ones included), in one read."""
    if not product_ids:
        return {}, set()
    rows = (await conn.execute(_BY_IDS, {"ids": product_ids})).all()
    return {r.id: _product(r) for r in rows if r.deleted_at is None}, {r.id for r in rows}


def _row(product_id: str, new: NewProduct, now: datetime) -> dict[str, Any]:
    return {
        "id": product_id,
        "name": new.name,
        "description": new.description,
        "category": new.category,
        "price": new.price,
        "currency": new.currency,
        "active": new.active,
        # Shown until inventory reports; inventory starts from this same quantity.
        "available": new.quantity,
        "search_text": search_text(new.name, new.description),
        "created_at": now,
        "updated_at": now,
    }


def _created(product_id: str, new: NewProduct) -> ProductCreated:
    return ProductCreated(
        productId=product_id,
        name=new.name,
        price=new.price,
        quantity=new.quantity,
        description=new.description or None,
        currency=new.currency,
        category=new.category or None,
        active=new.active,
    )


async def create(uow: UnitOfWork, new: NewProduct, product_id: str | None = None) -> Product:
    product_id = product_id or new_id()
    await uow.conn.execute(products.insert(), _row(product_id, new, datetime.now(UTC)))
    uow.publish(_created(product_id, new), subject=product_id)
    return await get(uow.conn, product_id)


async def put_many(uow: UnitOfWork, wanted: dict[str, NewProduct]) -> tuple[int, int]:
    """Make the products of ``wanted`` (by id) that do not exist and set the name and price of
    those that do (active and undeleted again, their stock left to inventory); (made, set).
    One insert and one executemany update, whatever the count, and each product's event as
    ``create`` and ``update`` publish it."""
    now = datetime.now(UTC)
    found = (await uow.conn.execute(_DESCRIPTIONS, {"ids": list(wanted)})).all()
    taken = {r.id: r.description for r in found}  # a put keeps the description
    fresh = {i: p for i, p in wanted.items() if i not in taken}
    if fresh:
        rows = [_row(product_id, p, now) for product_id, p in fresh.items()]
        await uow.conn.execute(products.insert(), rows)
    if taken:
        await uow.conn.execute(
            products.update()
            .where(products.c.id == sa.bindparam("put_id"))
            .values(
                name=sa.bindparam("put_name"),
                search_text=sa.bindparam("put_search_text"),
                price=sa.bindparam("put_price"),
                currency=sa.bindparam("put_currency"),
                active=True,
                deleted_at=None,
                updated_at=now,
            ),
            [
                {
                    "put_id": product_id,
                    "put_name": wanted[product_id].name,
                    "put_search_text": search_text(wanted[product_id].name, description),
                    "put_price": wanted[product_id].price,
                    "put_currency": wanted[product_id].currency,
                }
                for product_id, description in sorted(taken.items())
            ],
        )
    for product_id, p in wanted.items():
        if product_id in fresh:
            event: ProductCreated | ProductUpdated = _created(product_id, p)
        else:
            event = ProductUpdated(
                productId=product_id,
                name=p.name,
                price=p.price,
                currency=p.currency,
                active=True,
            )
        uow.publish(event, subject=product_id)
    return len(fresh), len(taken)


async def update(
    uow: UnitOfWork, product_id: str, changes: dict[str, Any], quantity: int | None
) -> Product:
    """Apply ``changes`` (column -> value); ProductUpdated carries the changed fields and
    always the current price (cart keeps its prices from it)."""
    before = await get(uow.conn, product_id)  # 404 before any write
    values = dict(changes)
    if "name" in changes or "description" in changes:
        values["search_text"] = search_text(
            changes.get("name", before.name), changes.get("description", before.description)
        )
    if quantity is not None:
        values["available"] = quantity
    await uow.conn.execute(
        products.update()
        .where(products.c.id == product_id)
        .values(**values, updated_at=datetime.now(UTC))
    )
    after = await get(uow.conn, product_id)
    fields = {k: v for k, v in changes.items() if k != "price"}
    uow.publish(
        ProductUpdated(
            productId=product_id,
            price=after.price,
            currency=after.currency if "currency" in changes else None,
            quantity=quantity,
            **{k: v for k, v in fields.items() if k != "currency"},
        ),
        subject=product_id,
    )
    return after


async def delete(uow: UnitOfWork, product_id: str) -> None:
    await get(uow.conn, product_id)
    now = datetime.now(UTC)
    await uow.conn.execute(
        products.update()
        .where(products.c.id == product_id)
        .values(deleted_at=now, active=False, updated_at=now)
    )
    uow.publish(ProductDeleted(productId=product_id), subject=product_id)


_STOCK_AT = sa.bindparam("b_at", type_=products.c.stock_at.type)
_SHOW_STOCK = (
    products.update()
    .where(
        products.c.id == sa.bindparam("b_id"),
        sa.or_(products.c.stock_at.is_(None), products.c.stock_at <= _STOCK_AT),
    )
    .values(available=sa.bindparam("b_available"), stock_at=_STOCK_AT)
)


async def set_available(conn: Connection, product_id: str, quantity: int, at: datetime) -> bool:
    """Record inventory's report unless a newer one is already in; False if none applied."""
    result = await conn.execute(
        _SHOW_STOCK, {"b_id": product_id, "b_available": quantity, "b_at": at}
    )
    return bool(result.rowcount)
