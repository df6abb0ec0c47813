"""Pages of products the gateway keeps: sent again only while the catalog's version stays,
and every kind of change to a product moves it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.api.common.v1 import common_pb2
from mercato.contracts.events import StockUpdated
from mercato.platform.envelope import Envelope
from mercato.services.catalog import versions
from mercato.services.catalog.handlers import show_stock
from mercato.services.gateway.pages import Pages, pages_of
from tests.conftest import eventually
from tests.services.catalog.test_catalog import ADMIN, bearer, services, settings_for
from tests.support import running

LAMPS = {"q": "lamp", "pageSize": "10"}
KEY = ("lamp", "", 1, 10, "name")
MARK = b'{"kept":true}'


async def report_stock(catalog: Any, product_id: str, quantity: int) -> None:
    """Inventory's StockUpdated for ``product_id``, handled by ``catalog`` (newer than any
    report before it)."""
    at = datetime.now(UTC) + timedelta(seconds=5)
    cause = Envelope(type="StockUpdated", source="mercato/inventory", data={}, time=at)
    async with catalog.transaction(cause) as uow:
        await show_stock(StockUpdated(productId=product_id, quantity=quantity), uow)


async def _kept_pages_follow_every_change(settings: Any) -> None:
    async with running(services(), settings) as (system, http):
        admin = await bearer(http, ADMIN)
        gateway, catalog = system.hosts["gateway"].ctx, system.hosts["catalog"].ctx
        assert gateway is not None and catalog is not None
        stub = CatalogStub(gateway.channel("catalog"))  # type: ignore[no-untyped-call]

        async def version() -> int:
            asked = pb.ListProductsRequest(page=common_pb2.PageRequest(page=1, page_size=1))
            return int((await stub.ListProducts(asked, timeout=5)).version)

        async def lamps() -> dict[str, Any]:
            response = await http.get("/api/v1/products", params=LAMPS)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            return dict(response.json())

        async def changed(change: Any, check: Any, elsewhere: bool = False) -> None:
            """``change`` moves the version, and the page shows it though one was kept: at
            once after a write through the gateway, once pushed after one made elsewhere."""
            before = await version()
            await change()
            assert await version() > before
            assert pages_of(gateway).get(KEY) is not None
            if elsewhere:
                await eventually(lambda: lamps_show(check), timeout=2)
            else:
                assert check(await lamps())

        async def lamps_show(check: Any) -> bool:
            return bool(check(await lamps()))

        made = await http.post(
            "/api/v1/products",
            json={"name": "Desk lamp", "price": 10, "quantity": 5},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        product_id = made.json()["productId"]
        first = await lamps()
        assert [p["name"] for p in first["items"]] == ["Desk lamp"]

        # Unchanged: the catalog says so, and the gateway sends what it kept (marked here).
        now = await version()
        asked = pb.ListProductsRequest(query="lamp", if_version=now)
        reply = await stub.ListProducts(asked, timeout=5)
        assert reply.unchanged and reply.version == now and not reply.products
        asked.if_version = now - 1
        reply = await stub.ListProducts(asked, timeout=5)
        assert not reply.unchanged and reply.version == now and len(reply.products) == 1
        pages_of(gateway).put(KEY, now, MARK)
        assert (await http.get("/api/v1/products", params=LAMPS)).content == MARK
        assert await lamps() == {"kept": True}

        async def patch() -> None:
            body = {"price": 12.5}
            answer = await http.patch(f"/api/v1/products/{product_id}", json=body, headers=admin)
            assert answer.status_code == 200, answer.text

        await changed(patch, lambda page: page["items"][0]["price"] == 12.5)

        async def stock() -> None:
            await report_stock(catalog, product_id, 2)

        await changed(stock, lambda page: page["items"][0]["available"] == 2, elsewhere=True)

        async def another() -> None:
            body = {"name": "Floor lamp", "price": 30}
            assert (await http.post("/api/v1/products", json=body, headers=admin)).is_success

        await changed(another, lambda page: page["total"] == 2)

        async def bulk() -> None:
            put = pb.PutProductsRequest(
                products=[
                    pb.PutProduct(
                        product_id="bulk-lamp",
                        name="Bulk lamp",
                        price=common_pb2.Money(amount="1.00", currency="USD"),
                    )
                ]
            )
            metadata = [("authorization", admin["Authorization"])]
            await stub.PutProducts(put, timeout=5, metadata=metadata)

        # Straight to the catalog, not through the gateway: made elsewhere.
        await changed(bulk, lambda page: page["total"] == 3, elsewhere=True)

        async def delete() -> None:
            gone = await http.delete(f"/api/v1/products/{product_id}", headers=admin)
            assert gone.status_code == 204

        await changed(delete, lambda page: page["total"] == 2)

        # An admin's view with the inactive products is never kept.
        kept = len(pages_of(gateway)._kept)
        params = {**LAMPS, "includeInactive": "true"}
        assert (await http.get("/api/v1/products", params=params, headers=admin)).is_success
        assert len(pages_of(gateway)._kept) == kept


async def test_kept_pages_follow_every_change(tmp_path: Path) -> None:
    await _kept_pages_follow_every_change(settings_for(tmp_path))


async def test_kept_pages_follow_every_change_on_postgres(
    tmp_path: Path, postgres_template: str
) -> None:
    await _kept_pages_follow_every_change(settings_for(tmp_path, database_url=postgres_template))


def test_the_least_recently_shown_page_goes_first() -> None:
    pages = Pages()
    for i in range(Pages.SIZE):
        pages.put((i,), i, b"")
    assert pages.get((0,)) is not None  # shown again: now the most recent
    pages.put(("new",), 0, b"")
    assert pages.get((1,)) is None and pages.get((0,)) is not None
    assert len(pages._kept) == Pages.SIZE


async def test_writers_in_opposite_orders_do_not_deadlock_on_the_version(
    tmp_path: Path, postgres_template: str
) -> None:
    """The version row is taken at commit (a deferred trigger), after the product rows: a
    transaction that has changed one product and waits for another never holds it."""
    settings = settings_for(tmp_path, database_url=postgres_template)
    async with running(services(), settings) as (_system, http):
        admin = await bearer(http, ADMIN)
        ids = []
        for name in ("One", "Two"):
            made = await http.post(
                "/api/v1/products", json={"name": name, "price": 1}, headers=admin
            )
            ids.append(made.json()["productId"])
    url = postgres_template.format(service="catalog").replace("postgresql+asyncpg", "postgresql")
    first, second = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        touch = "UPDATE products SET available = available + 1 WHERE id = $1"
        before = await first.fetchval("SELECT version FROM catalog_version")
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await asyncio.wait_for(first.execute(touch, ids[0]), 5)
        await asyncio.wait_for(second.execute(touch, ids[1]), 5)
        waiting = asyncio.ensure_future(first.execute(touch, ids[1]))  # waits for second
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await asyncio.wait_for(two.commit(), 5)
        await asyncio.wait_for(waiting, 5)
        await one.commit()
        assert await first.fetchval("SELECT version FROM catalog_version") == before + 3
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("event", ["insert", "update", "delete"])
async def test_sqlite_triggers_move_the_version(tmp_path: Path, event: str) -> None:
    async with running(services(), settings_for(tmp_path)) as (system, http):
        admin = await bearer(http, ADMIN)
        made = await http.post("/api/v1/products", json={"name": "A", "price": 1}, headers=admin)
        product_id = made.json()["productId"]
        catalog = system.hosts["catalog"].ctx
        assert catalog is not None
        read = "SELECT version FROM catalog_version"
        async with catalog.transaction() as uow:
            before = (await uow.conn.execute(text(read))).scalar_one()
            statement = {
                "insert": "INSERT INTO products (id, name, description, category, price,"
                " currency, active, available, created_at, updated_at, search_text)"
                " SELECT 'copy', name, description, category, price, currency, active,"
                " available, created_at, updated_at, search_text FROM products WHERE id = :id",
                "update": "UPDATE products SET available = 3 WHERE id = :id",
                "delete": "DELETE FROM products WHERE id = :id",
            }[event]
            await uow.conn.execute(text(statement), {"id": product_id})
            after = (await uow.conn.execute(text(read))).scalar_one()
        assert after == before + 1


async def test_the_watch_says_the_version_again_and_each_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "HEARTBEAT", 0.1)
    async with running(services(), settings_for(tmp_path)) as (system, http):
        admin = await bearer(http, ADMIN)
        catalog = system.hosts["catalog"].ctx
        assert catalog is not None
        watch = versions.VersionWatch(catalog.db, 0.01)
        async with contextlib.aclosing(watch.changes()) as changes:
            first = await anext(changes)
            assert await asyncio.wait_for(anext(changes), 1) == first  # unmoved: said again
            body = {"name": "A", "price": 1}
            assert (await http.post("/api/v1/products", json=body, headers=admin)).is_success
            assert await asyncio.wait_for(anext(changes), 1) > first
        assert watch._reader is None  # no one watches: no more reads


async def test_a_version_it_cannot_read_ends_the_watch(tmp_path: Path) -> None:
    async with running(services(), settings_for(tmp_path)) as (system, _http):
        catalog = system.hosts["catalog"].ctx
        assert catalog is not None
        watch = versions.VersionWatch(catalog.db, 0.01)
        changes = watch.changes()
        await anext(changes)
        async with catalog.transaction() as uow:  # the table gone: every read fails
            await uow.conn.execute(text("DROP TABLE catalog_version"))
        with pytest.raises(Exception, match="catalog_version"):
            await asyncio.wait_for(anext(changes), 1)
