"""recommendation's event handlers: keep the catalog's products, count views and purchases.

Idempotent: the inbox records each event with its effects, so a redelivered or replayed
event counts nothing twice. Concurrency: counts move by atomic upserts (``count = count +
1``), and one viewer's views are paired one at a time (``store.take_turn``), so two replicas
handling events at once lose no count and count none twice.

Reordering: tolerated everywhere. A product's events are applied by their time (an older
one arriving late fills only what is still unknown; a deletion is never undone); views and
orders are counts, which do not depend on order.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mercato.contracts.events import (
    OrderCompleted,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ProductViewed,
)
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.recommendation import domain, store
from mercato.services.recommendation.domain import Reason


def _time(uow: UnitOfWork) -> datetime:
    return uow.cause.time if uow.cause is not None else datetime.now(UTC)


async def keep_created_product(event: ProductCreated, uow: UnitOfWork) -> None:
    await _keep(uow, event, category=event.category or "", active=event.active is not False)


async def keep_updated_product(event: ProductUpdated, uow: UnitOfWork) -> None:
    """Only the fields the event carries change (None: not said)."""
    await _keep(uow, event, category=event.category, active=event.active)


async def _keep(
    uow: UnitOfWork,
    event: ProductCreated | ProductUpdated,
    category: str | None,
    active: bool | None,
) -> None:
    await store.keep_product(
        uow.conn,
        event.productId,
        _time(uow),
        name=event.name,
        price=event.price,
        currency=event.currency,
        category=category,
        active=active,
    )


async def forget_deleted_product(event: ProductDeleted, uow: UnitOfWork) -> None:
    """Never recommended again, whatever arrives after."""
    await store.keep_product(uow.conn, event.productId, _time(uow), deleted=True)


async def count_view(event: ProductViewed, uow: UnitOfWork) -> None:
    """One more view of the product; a viewer's first view of it pairs it ("also viewed")
    with the other products they viewed last."""
    conn, product_id = uow.conn, event.productId
    viewer = domain.viewer_of(event.userId, event.sessionId)
    if viewer is not None:
        await store.take_turn(conn, viewer)
        if await store.see(conn, viewer, product_id, _time(uow)):
            others = await store.recent(conn, viewer, domain.MAX_PAIRED, product_id)
            await store.add_pairs(conn, Reason.ALSO_VIEWED, domain.both_ways(product_id, others))
    await store.add_popularity(conn, [product_id], views=1)


async def count_purchase(event: OrderCompleted, uow: UnitOfWork) -> None:
    """The order's products were bought together, and each once more."""
    bought = domain.order_products(i.productId for i in event.items or ())
    await store.add_pairs(uow.conn, Reason.BOUGHT_TOGETHER, domain.order_pairs(bought))
    await store.add_popularity(uow.conn, bought, purchases=1)
