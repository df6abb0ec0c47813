"""Two cart replicas handling the catalog's events of one product at the same moment, on
PostgreSQL (see ``tests/services/replicas.py`` for how the two are made to meet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mercato.contracts.events import ProductDeleted, ProductUpdated
from mercato.platform.unit_of_work import transaction
from mercato.services.cart import store
from mercato.services.cart.service import service
from mercato.services.cart.tables import cart_items, product_prices
from tests.services.replicas import Replicas, replicas

PRODUCT_KEY = "INSERT INTO product_prices (product_id, as_of) VALUES ($1, now())"
PRODUCT_ROW = "SELECT 1 FROM product_prices WHERE product_id = $1 FOR UPDATE"


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    """Two cart replicas; u1's cart holds product p (priced by the catalog, never by an event:
    cart has no row for it yet)."""
    async with replicas(service, postgres_template) as found:
        priced = store.Priced("p", "P", Decimal("5.00"), "USD", datetime(2025, 1, 1, tzinfo=UTC))
        async with transaction(found.first.db, "cart") as uow:
            await store.add_item(uow, "u1", priced, 1, datetime.now(UTC))
        yield found


async def kept(two: Replicas) -> tuple[list[str], bool]:
    """The products in carts, and whether cart knows p is deleted."""
    async with two.first.db.connect() as conn:
        held = (await conn.execute(sa.select(cart_items.c.product_id))).scalars().all()
        gone = await conn.scalar(
            sa.select(product_prices.c.deleted_at.is_not(None)).where(
                product_prices.c.product_id == "p"
            )
        )
    return list(held), bool(gone)


async def test_an_update_and_a_deletion_of_an_unknown_product_at_once_both_apply(
    two: Replicas,
) -> None:
    # No row to lock yet: both wait for the key the test's session holds; then one inserts
    # it and the other waits for that, reads it and goes on (no unique violation, no retry).
    updated = ProductUpdated(productId="p", price=Decimal("6.00"))
    await two.at_once(PRODUCT_KEY, "p", updated, ProductDeleted(productId="p"))
    assert await kept(two) == ([], True)


async def test_an_update_and_a_deletion_at_once_leave_the_product_out_of_carts(
    two: Replicas,
) -> None:
    async with transaction(two.first.db, "cart") as uow:  # cart knows the product already
        await store.reprice(uow, "p", datetime(2025, 1, 2, tzinfo=UTC), None, None, "P")
    updated = ProductUpdated(productId="p", price=Decimal("6.00"))
    await two.at_once(PRODUCT_ROW, "p", ProductDeleted(productId="p"), updated)
    assert await kept(two) == ([], True)
