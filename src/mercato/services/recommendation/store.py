"""recommendation's statements: products, views, pairs and popularity.

Every count moves by ``count = count + n`` in an upsert, so two replicas counting at once
both count (the database applies the two increments one after the other). The rows an event
counts are written in one statement, in key order, so two events touching the same pairs
lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Row,
    and_,
    bindparam,
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.storage.sql import Connection
from mercato.services.recommendation.domain import PURCHASE_WEIGHT
from mercato.services.recommendation.tables import pairs, popularity, products, viewed

_FIELDS = ("name", "price", "currency", "category", "active")
_DIALECTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _keep_statement(insert: Any) -> Any:
    """Upsert a product's fields. A field not given (None) keeps what is known; a newer event
    (by its time) overwrites, an older one that arrives late only fills what is unknown, so
    ProductUpdated before its ProductCreated, or two updates out of order, end as the newest
    says. ``deleted`` is never undone."""
    new = insert(products)
    newer = new.excluded.changed_at >= products.c.changed_at
    kept = {
        f: case(
            (newer, func.coalesce(new.excluded[f], products.c[f])),
            else_=func.coalesce(products.c[f], new.excluded[f]),
        )
        for f in _FIELDS
    }
    kept["deleted"] = products.c.deleted | new.excluded.deleted
    kept["changed_at"] = case((newer, new.excluded.changed_at), else_=products.c.changed_at)
    return new.on_conflict_do_update(index_elements=[products.c.product_id], set_=kept)


_KEEP = {name: _keep_statement(insert) for name, insert in _DIALECTS.items()}


async def keep_product(
    conn: Connection, product_id: str, at: datetime, *, deleted: bool = False, **fields: Any
) -> None:
    row = {"product_id": product_id, "deleted": deleted, "changed_at": at}
    row.update({f: fields.get(f) for f in _FIELDS})
    await conn.execute(_KEEP[conn.dialect.name], row)


def _count_statement(insert: Any, table: Any, keys: Sequence[str], counts: Sequence[str]) -> Any:
    new = insert(table)
    return new.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c: table.c[c] + new.excluded[c] for c in counts},
    )


_PAIRS = {
    name: _count_statement(insert, pairs, ("product_id", "kind", "other_id"), ("count",))
    for name, insert in _DIALECTS.items()
}
_POPULARITY = {
    name: _count_statement(insert, popularity, ("product_id",), ("views", "purchases"))
    for name, insert in _DIALECTS.items()
}


async def add_pairs(conn: Connection, kind: str, counts: Mapping[tuple[str, str], int]) -> None:
    rows = [
        {"product_id": a, "kind": kind, "other_id": b, "count": n}
        for (a, b), n in sorted(counts.items())
    ]
    if rows:
        await conn.execute(_PAIRS[conn.dialect.name], rows)


async def add_popularity(
    conn: Connection, product_ids: Collection[str], *, views: int = 0, purchases: int = 0
) -> None:
    rows = [{"product_id": p, "views": views, "purchases": purchases} for p in sorted(product_ids)]
    if rows:
        await conn.execute(_POPULARITY[conn.dialect.name], rows)


# PostgreSQL's two-key advisory locks: the first key says what is locked, the second whose.
_VIEWER_TURN = text("SELECT pg_advisory_xact_lock(:kind, hashtext(:viewer))")
_VIEWERS = 0x5245_434F  # "RECO"


async def take_turn(conn: Connection, viewer: str) -> None:
    """Until the transaction ends, one viewer's views are paired one at a time: two replicas
    handling the same viewer's views of two products would otherwise each miss the other's
    uncommitted view, and the pair would never be counted. SQLite's transactions hold the
    write lock from their start: nothing to do."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_VIEWER_TURN, {"kind": _VIEWERS, "viewer": viewer})


_VIEWER: BindParameter[str] = bindparam("b_viewer")
_SEEN = {
    "postgresql": postgresql.insert(viewed).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(viewed).on_conflict_do_nothing(),
}
_AT: BindParameter[datetime] = bindparam("b_at")
_SEEN_AGAIN = (
    update(viewed)
    .where(
        viewed.c.viewer == _VIEWER,
        viewed.c.product_id == bindparam("b_product_id"),
        viewed.c.at < _AT,
    )
    .values(at=_AT)
)
_RECENT = (
    select(viewed.c.product_id)
    .where(viewed.c.viewer == _VIEWER, viewed.c.product_id != bindparam("b_product_id"))
    .order_by(viewed.c.at.desc(), viewed.c.product_id)
    .limit(bindparam("b_limit"))
)


async def see(conn: Connection, viewer: str, product_id: str, at: datetime) -> bool:
    """Record the view; True when the viewer had not viewed the product before."""
    row = {"viewer": viewer, "product_id": product_id, "at": at}
    if (await conn.execute(_SEEN[conn.dialect.name], row)).rowcount == 1:
        return True
    await conn.execute(_SEEN_AGAIN, {"b_viewer": viewer, "b_product_id": product_id, "b_at": at})
    return False


async def recent(conn: Connection, viewer: str, limit: int, besides: str = "") -> list[str]:
    """The viewer's last ``limit`` products viewed, newest first (without ``besides``)."""
    params = {"b_viewer": viewer, "b_product_id": besides, "b_limit": limit}
    return list((await conn.scalars(_RECENT, params)).all())


_SEEDS: BindParameter[list[str]] = bindparam("b_seeds", expanding=True)
_PARTNERS = (
    select(pairs.c.other_id, pairs.c.kind, func.sum(pairs.c.count).label("count"))
    .where(pairs.c.product_id.in_(_SEEDS))
    .group_by(pairs.c.other_id, pairs.c.kind)
    .order_by(func.sum(pairs.c.count).desc(), pairs.c.other_id)
    .limit(500)
)
# What may be shown: known by name and price, active, not deleted.
_SHOWABLE = and_(
    products.c.deleted.is_(False),
    products.c.active.is_(True),
    products.c.name.is_not(None),
    products.c.price.is_not(None),
)
_SHOWN = select(products).where(products.c.product_id.in_(_SEEDS), _SHOWABLE)
_CATEGORIES = select(products.c.category).where(
    products.c.product_id.in_(_SEEDS), products.c.category.is_not(None), products.c.category != ""
)
_POPULAR_SCORE = (
    func.coalesce(popularity.c.purchases, 0) * PURCHASE_WEIGHT
    + func.coalesce(popularity.c.views, 0)
).label("popularity")


async def partners(conn: Connection, seeds: Sequence[str]) -> list[tuple[str, str, int]]:
    """The seeds' partners: (other product, kind, count summed over the seeds)."""
    if not seeds:
        return []
    rows = await conn.execute(_PARTNERS, {"b_seeds": list(seeds)})
    return [(r.other_id, r.kind, int(r.count)) for r in rows]


async def shown(conn: Connection, product_ids: Collection[str]) -> dict[str, Row[Any]]:
    """Of ``product_ids``, those that may be shown, with their name and price."""
    if not product_ids:
        return {}
    rows = await conn.execute(_SHOWN, {"b_seeds": list(product_ids)})
    return {r.product_id: r for r in rows}


async def categories(conn: Connection, product_ids: Sequence[str]) -> list[str]:
    if not product_ids:
        return []
    return sorted(set((await conn.scalars(_CATEGORIES, {"b_seeds": list(product_ids)})).all()))


async def popular(
    conn: Connection, in_categories: Sequence[str], exclude: Collection[str], limit: int
) -> list[tuple[Row[Any], int]]:
    """The most popular products that may be shown, in ``in_categories`` (all when empty),
    besides ``exclude``."""
    query = (
        select(products, _POPULAR_SCORE)
        .outerjoin(popularity, popularity.c.product_id == products.c.product_id)
        .where(_SHOWABLE)
        .order_by(_POPULAR_SCORE.desc(), products.c.name, products.c.product_id)
        .limit(limit)
    )
    if in_categories:
        query = query.where(products.c.category.in_(list(in_categories)))
    if exclude:
        query = query.where(products.c.product_id.not_in(list(exclude)))
    return [(r, int(r.popularity)) for r in await conn.execute(query)]
