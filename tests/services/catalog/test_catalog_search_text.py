"""products.search_text: written with every product, filled in for products made before it
(catalog_0002), and searched the same way on SQLite and PostgreSQL, case folded beyond ASCII."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from mercato.platform.storage.database import (
    ensure_database,
    open_database,
    schema_engine,
    service_url,
)
from mercato.platform.storage.migrate import alembic_config, migrate
from mercato.services.catalog import store
from mercato.services.catalog.domain import Page, search_text
from mercato.services.catalog.service import service

VERSIONS = service.migrations


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_template"))


async def test_products_made_before_the_column_are_found(tmp_path: Path, template: str) -> None:
    url = service_url(template, "catalog", tmp_path)
    await ensure_database(url)
    engine = schema_engine(url)
    try:
        async with engine.begin() as conn:

            def to_0001(sync: sa.Connection) -> None:
                cfg = alembic_config(VERSIONS)
                cfg.attributes["connection"] = sync
                command.upgrade(cfg, "catalog_0001")

            await conn.run_sync(to_0001)
            products = sa.table("products", *(sa.column(c) for c in COLUMNS))
            await conn.execute(
                products.insert(),
                [
                    {**ROW, "id": "p1", "name": "Éclair tin", "description": "Crème BRÛLÉE"},
                    {**ROW, "id": "p2", "name": "Mug", "description": "A plain mug"},
                ],
            )
    finally:
        await engine.dispose()
    db = open_database(url)
    try:
        await migrate(db, VERSIONS)
        async with db.connect() as reader:
            for words, expected in (("éCLAIR", ["p1"]), ("brûlée tin", ["p1"]), ("MUG", ["p2"])):
                found, total = await store.search(reader, words, "", "name", Page(1, 10))
                assert [p.product_id for p in found] == expected and total == 1, words
            # The newline between name and description is no part of any word.
            found, _ = await store.search(reader, "tin\ncrème", "", "name", Page(1, 10))
            assert [p.product_id for p in found] == ["p1"]
            nothing, total = await store.search(reader, "tincrème", "", "name", Page(1, 10))
            assert nothing == [] and total == 0
    finally:
        await db.dispose()
    assert search_text("Éclair", "BRÛLÉE") == "éclair\nbrûlée"


COLUMNS = (
    "id",
    "name",
    "description",
    "category",
    "price",
    "currency",
    "active",
    "available",
    "created_at",
    "updated_at",
)
ROW = {
    "category": "",
    "price": 5,
    "currency": "USD",
    "active": True,
    "available": 1,
    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
}
