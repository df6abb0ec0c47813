"""The small demo catalog the embedded system starts with (MERCATO_DEMO_CATALOG)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mercato.platform.runtime.service import ServiceContext
from mercato.services.catalog import store
from mercato.services.catalog.tables import seeded

DEMO = "demo_catalog"
# (id, name, category, price, quantity, description). Fixed ids: a demo is easy to script.
PRODUCTS = (
    (
        "demo-mug",
        "Enamel camp mug",
        "kitchen",
        "12.50",
        40,
        "A 350 ml enamel mug that takes knocks.",
    ),
    ("demo-kettle", "Stovetop kettle", "kitchen", "39.00", 15, "1.5 l stainless steel, whistles."),
    ("demo-lamp", "Desk lamp", "home", "54.90", 12, "Warm LED desk lamp with a dimmer."),
    ("demo-throw", "Wool throw", "home", "79.00", 8, "Merino wool throw, 130 x 170 cm."),
    ("demo-notebook", "Dot grid notebook", "stationery", "9.95", 120, "A5, 160 pages."),
    ("demo-pen", "Fountain pen", "stationery", "24.00", 30, "Steel nib, refillable converter."),
    ("demo-backpack", "Day backpack", "outdoor", "89.00", 10, "22 l, water resistant."),
    ("demo-bottle", "Insulated bottle", "outdoor", "29.50", 50, "Keeps drinks cold for 24 hours."),
)


async def load_demo_catalog(ctx: ServiceContext) -> None:
    """Load the demo products once: the marker row commits with them, so a restart (or a
    second replica racing this one) finds it and skips."""
    if not ctx.settings.demo_catalog:
        return
    async with ctx.db.connect() as conn:
        done = (await conn.execute(sa.select(seeded.c.name).where(seeded.c.name == DEMO))).first()
    if done is not None:
        return
    try:
        await _load(ctx)
    except IntegrityError:
        pass  # another replica loaded it first: its marker row beat ours


async def _load(ctx: ServiceContext) -> None:
    async with ctx.transaction() as uow:
        # The primary key makes a racing second loader fail here, before any product is added.
        await uow.conn.execute(seeded.insert().values(name=DEMO, done_at=datetime.now(UTC)))
        for product_id, name, category, price, quantity, description in PRODUCTS:
            new = store.NewProduct(
                name=name,
                description=description,
                category=category,
                price=Decimal(price),
                currency="USD",
                quantity=quantity,
            )
            await store.create(uow, new, product_id=product_id)
