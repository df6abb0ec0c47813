"""cart's event handlers: keep the prices in carts current and take deleted products out.

Both tolerate reordering: what they learn about a product is kept with the catalog's time
(``as_of`` = the event's time), an older event than the one already applied changes nothing,
and a deletion is final (a later ProductUpdated for a deleted product is ignored). The inbox
makes a redelivered event a no-op. Two replicas handling events of one product at the same
moment take turns on the product's row in ``product_prices`` (locked, or first inserted
``ON CONFLICT DO NOTHING``: see ``store._remember``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from mercato.contracts.events import ProductDeleted, ProductUpdated
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.cart import store


def _as_of(uow: UnitOfWork) -> datetime:
    return uow.cause.time if uow.cause is not None else datetime.now(UTC)


async def reprice_cart_items(event: ProductUpdated, uow: UnitOfWork) -> None:
    await store.reprice(
        uow,
        event.productId,
        _as_of(uow),
        price=event.price,
        currency=event.currency,
        name=event.name,
    )


async def drop_deleted_product(event: ProductDeleted, uow: UnitOfWork) -> None:
    await store.retire(uow, event.productId, _as_of(uow))
