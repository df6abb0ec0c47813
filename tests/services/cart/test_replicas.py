"""Two cart replicas handling the catalog's events of one product at the same moment, and an
event handled while a request adds the product, on PostgreSQL (see
``tests/services/replicas.py`` for how they are made to meet)."""

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
from mercato.services.cart.tables import cart_items, carts, product_prices
from tests.services.replicas import Replicas, meet, replicas

PRODUCT_KEY = "INSERT INTO product_prices (product_id, as_of) VALUES ($1, now())"
PRODUCT_ROW = "SELECT 1 FROM product_prices WHERE product_id = $1 FOR UPDATE"
LINE_KEY = (
    "INSERT INTO cart_items (cart_id, product_id, name, quantity, price, currency, price_as_of,"
    " added_at) VALUES ($1, 'p', 'P', 1, '5', 'USD', now(), now())"
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    """Two cart replicas; u1's cart holds product q. Cart knows nothing of product p yet."""
    async with replicas(service, postgres_template) as found:
        await add(found, "q")
        yield found


async def add(two: Replicas, product_id: str) -> None:
    """u1 adds the product, priced by the catalog (AddItem's work)."""
    priced = store.Priced(product_id, product_id.upper(), Decimal("5.00"), "USD", T0)
    async with transaction(two.first.db, "cart") as uow:
        await store.add_item(uow, "u1", priced, 1, datetime.now(UTC))


async def know(two: Replicas) -> None:
    """An earlier event has told cart about p."""
    async with transaction(two.first.db, "cart") as uow:
        await store.reprice(uow, "p", T0, None, None, "P")


async def kept(two: Replicas) -> tuple[list[str], bool]:
    """The products in carts, and whether cart knows p is deleted."""
    async with two.first.db.connect() as conn:
        held = (await conn.execute(sa.select(cart_items.c.product_id))).scalars().all()
        gone = await conn.scalar(
            sa.select(product_prices.c.deleted_at.is_not(None)).where(
                product_prices.c.product_id == "p"
            )
        )
    return sorted(held), bool(gone)


async def test_an_update_and_a_deletion_of_an_unknown_product_at_once_both_apply(
    two: Replicas,
) -> None:
    # No row to lock yet: both wait for the key the test's session holds; then one inserts
    # it and the other waits for that, reads it and goes on (no unique violation, no retry).
    updated = ProductUpdated(productId="p", price=Decimal("6.00"))
    await two.at_once(PRODUCT_KEY, "p", updated, ProductDeleted(productId="p"))
    assert await kept(two) == (["q"], True)


async def test_an_update_and_a_deletion_at_once_take_turns(two: Replicas) -> None:
    await know(two)
    updated = ProductUpdated(productId="p", price=Decimal("6.00"))
    await two.at_once(PRODUCT_ROW, "p", ProductDeleted(productId="p"), updated)
    assert await kept(two) == (["q"], True)


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
async def test_a_deletion_handled_while_the_product_is_added_takes_it_out(
    two: Replicas, postgres_template: str, known: bool
) -> None:
    # The request has read what cart knows of p and waits to write its line (the test's
    # session holds the line's key); the deletion comes meanwhile. Each missed the other's
    # work with a plain read: the deleted product stayed in the cart.
    if known:
        await know(two)
    async with two.first.db.connect() as conn:
        cart_id = await conn.scalar(sa.select(carts.c.id))
    deleted = two.of[1].handle(ProductDeleted(productId="p"))
    assert await meet(postgres_template, "cart", LINE_KEY, [cart_id], add(two, "p"), deleted) == [
        None,
        [None],
    ]
    assert await kept(two) == (["q"], True)
