"""Two catalog replicas keeping inventory's stock reports of one product at the same moment,
on PostgreSQL (see ``tests/services/replicas.py`` for how the two are made to meet)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from mercato.contracts.events import StockUpdated
from mercato.platform.unit_of_work import transaction
from mercato.services.catalog import store
from mercato.services.catalog.service import service
from mercato.services.catalog.tables import products
from tests.services.replicas import message, replicas

PRODUCT_ROW = "SELECT 1 FROM products WHERE id = $1 FOR UPDATE"


async def test_the_newer_of_two_stock_reports_handled_at_once_is_kept(
    postgres_template: str,
) -> None:
    async with replicas(service, postgres_template) as two:
        new = store.NewProduct("P", "", "c", Decimal("1.00"), "USD", 10)
        async with transaction(two.first.db, "catalog") as uow:
            await store.create(uow, new, product_id="p")
        now = datetime.now(UTC)
        newer = message(StockUpdated(productId="p", quantity=3), now)
        older = message(StockUpdated(productId="p", quantity=7), now - timedelta(seconds=1))
        # The newer one takes the row first; the older one, waiting behind it, finds it newer.
        await two.at_once(PRODUCT_ROW, "p", newer, older)
        async with two.first.db.connect() as conn:
            shown = await conn.scalar(sa.select(products.c.available).where(products.c.id == "p"))
        assert shown == 3
