"""The displayed stock rebuilt from the event log: a projection rebuild.

The stored StockUpdated events are handed, oldest first, to an inbox consumer of their own
(``catalog.stock-rebuild.<id>``: a new consumer name, so the live consumer's inbox does not
take them for events already seen), whose handler builds the availability in
``displayed_stock_rebuild``, newest report per product winning, as ``show_stock`` does. Then
one transaction swaps it into the products, again newest-wins, so a report the live consumer
handled meanwhile is never overwritten by an older one, and removes the rebuild's rows and
inbox records. A rebuild that fails before the swap leaves the live model as it was.

``wipe_displayed_stock`` empties the live model first (every product 0, no report), to show
that the rebuild alone brings it back.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import StockUpdated
from mercato.platform.bus.port import RawMessage, topic_of
from mercato.platform.envelope import NATS_PREFIX, Envelope
from mercato.platform.ids import new_id
from mercato.platform.inbox import InboxConsumer, on
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import inbox
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.catalog.tables import products, stock_rebuild

_INSERT: dict[str, Any] = {
    "postgresql": postgresql.insert(stock_rebuild),
    "sqlite": sqlite.insert(stock_rebuild),
}
_KEEP_NEWEST = {
    name: insert.on_conflict_do_update(
        index_elements=[stock_rebuild.c.consumer, stock_rebuild.c.product_id],
        set_={"available": insert.excluded.available, "stock_at": insert.excluded.stock_at},
        where=stock_rebuild.c.stock_at <= insert.excluded.stock_at,
    )
    for name, insert in _INSERT.items()
}


class RebuildFailed(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Rebuilt:
    consumer: str
    events: int  # StockUpdated events handed over
    products: int  # products whose displayed stock the swap set


async def wipe_displayed_stock(db: Database) -> int:
    async with db.begin() as conn:
        result = await conn.execute(products.update().values(available=0, stock_at=None))
        return int(result.rowcount)


async def rebuild_displayed_stock(
    db: Database, stored: AsyncIterable[Sequence[Envelope]], consumer: str | None = None
) -> Rebuilt:
    name = consumer or f"catalog.stock-rebuild.{new_id()}"
    dialect = "postgresql" if db.dialect.name == "postgresql" else "sqlite"

    async def keep_report(event: StockUpdated, uow: UnitOfWork) -> None:
        assert uow.cause is not None
        await uow.conn.execute(
            _KEEP_NEWEST[dialect],
            {
                "consumer": name,
                "product_id": event.productId,
                "available": event.quantity,
                "stock_at": uow.cause.time,
            },
        )

    consume = InboxConsumer(name, db, [on(StockUpdated, keep_report)])
    handed = 0
    try:
        async for chunk in stored:
            batch = [
                RawMessage(topic_of(e), *e.to_binary(NATS_PREFIX), NATS_PREFIX)
                for e in chunk
                if e.type == "StockUpdated"
            ]
            if not batch:
                continue
            verdicts = await consume(batch)
            failed = sum(v is not None for v in verdicts)
            if failed:
                raise RebuildFailed(f"{failed} StockUpdated event(s) could not be handled")
            handed += len(batch)
        async with db.begin() as conn:
            swapped = await conn.execute(_swap(), {"b_consumer": name})
            count = int(swapped.rowcount)
    finally:
        async with db.begin() as conn:
            await conn.execute(stock_rebuild.delete().where(stock_rebuild.c.consumer == name))
            await conn.execute(inbox.delete().where(inbox.c.consumer == name))
    return Rebuilt(name, handed, count)


def _swap() -> sa.Update:
    rebuilt = stock_rebuild.alias("rebuilt")
    mine = sa.and_(
        rebuilt.c.consumer == sa.bindparam("b_consumer"), rebuilt.c.product_id == products.c.id
    )
    newer = sa.or_(products.c.stock_at.is_(None), products.c.stock_at <= rebuilt.c.stock_at)
    return (
        products.update()
        .where(sa.exists().where(mine, newer))
        .values(
            available=sa.select(rebuilt.c.available).where(mine).scalar_subquery(),
            stock_at=sa.select(rebuilt.c.stock_at).where(mine).scalar_subquery(),
        )
    )
