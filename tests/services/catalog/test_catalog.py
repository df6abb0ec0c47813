"""catalog through the gateway, embedded with identity (in-process bus, SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from sqlalchemy import select

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.contracts.events import StockUpdated
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.tables import outbox
from mercato.services import load_service
from mercato.services.catalog.handlers import show_stock
from tests.conftest import eventually
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
ADA = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
PROBLEM = "application/problem+json"


@dataclass
class Shop:
    system: System
    http: httpx.AsyncClient
    admin: dict[str, str]
    customer: dict[str, str]

    async def events(self, event_type: str) -> list[Envelope]:
        ctx = self.system.hosts["catalog"].ctx
        assert ctx is not None
        async with ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e for e in found if e.type == event_type]

    async def create(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/api/v1/products", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return dict(response.json())


async def bearer(http: httpx.AsyncClient, who: dict[str, str]) -> dict[str, str]:
    body = {"email": who["email"], "password": who["password"]}
    response = await http.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(
        tmp_path, admin_email=ADMIN["email"], admin_password=ADMIN["password"], **overrides
    )


def services() -> list[Any]:
    return [load_service(name) for name in ("identity", "catalog", "gateway")]


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async with running(services(), settings_for(tmp_path)) as (system, http):
        assert (await http.post("/api/v1/auth/register", json=ADA)).status_code == 201
        yield Shop(system, http, await bearer(http, ADMIN), await bearer(http, ADA))


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return dict(response.json())


async def test_admin_creates_updates_and_deletes_with_events(shop: Shop) -> None:
    made = await shop.create(
        name="Teapot", description="Cast iron", category="Kitchen", price=19.99, quantity=7
    )
    product_id = made["productId"]
    assert made["price"] == 19.99 and made["currency"] == "USD" and made["category"] == "kitchen"
    assert made["available"] == 7 and made["active"] is True
    # Times carry their offset (UTC), on SQLite as on PostgreSQL.
    for moment in (made["createdAt"], made["updatedAt"]):
        assert datetime.fromisoformat(moment).utcoffset() == timedelta(0), moment
    [created] = await shop.events("ProductCreated")
    assert created.subject == product_id
    assert created.data["quantity"] == 7 and created.data["price"] == 19.99
    assert created.data["name"] == "Teapot" and created.data["category"] == "kitchen"

    changed = await shop.http.patch(
        f"/api/v1/products/{product_id}",
        json={"price": 24.5, "name": "Big teapot"},
        headers=shop.admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["price"] == 24.5 and changed.json()["name"] == "Big teapot"
    [updated] = await shop.events("ProductUpdated")
    assert updated.data["productId"] == product_id and updated.data["price"] == 24.5
    assert updated.data["name"] == "Big teapot" and "description" not in updated.data

    seen = await shop.http.get(f"/api/v1/products/{product_id}")
    assert seen.status_code == 200 and seen.json()["name"] == "Big teapot"

    gone = await shop.http.delete(f"/api/v1/products/{product_id}", headers=shop.admin)
    assert gone.status_code == 204
    [deleted] = await shop.events("ProductDeleted")
    assert deleted.data == {"productId": product_id}
    problem(await shop.http.get(f"/api/v1/products/{product_id}"), 404)
    problem(await shop.http.delete(f"/api/v1/products/{product_id}", headers=shop.admin), 404)
    listed = (await shop.http.get("/api/v1/products")).json()
    assert listed["total"] == 0


async def test_browse_search_filter_sort_and_page(shop: Shop) -> None:
    for name, category, price in [
        ("Red mug", "kitchen", 8),
        ("Blue mug", "kitchen", 12),
        ("Desk lamp", "home", 40),
        ("Mug rack", "home", 25),
        ("100% cotton towel", "home", 15),
    ]:
        await shop.create(name=name, category=category, price=price, quantity=3)
    await shop.create(name="Hidden mug", price=1, active=False)

    page = (await shop.http.get("/api/v1/products", params={"q": "MUG", "sort": "price"})).json()
    both = (await shop.http.get("/api/v1/products", params={"q": "mug red"})).json()
    assert [p["name"] for p in both["items"]] == ["Red mug"]
    assert [p["name"] for p in page["items"]] == ["Red mug", "Blue mug", "Mug rack"]
    assert page["total"] == 3
    kitchen = await shop.http.get(
        "/api/v1/products", params={"category": "kitchen", "sort": "-price"}
    )
    assert [p["name"] for p in kitchen.json()["items"]] == ["Blue mug", "Red mug"]
    # "%" and "_" in the search text are plain characters.
    percent = (await shop.http.get("/api/v1/products", params={"q": "100%"})).json()
    assert [p["name"] for p in percent["items"]] == ["100% cotton towel"]

    first = (await shop.http.get("/api/v1/products", params={"pageSize": 2})).json()
    second = (await shop.http.get("/api/v1/products", params={"pageSize": 2, "page": 2})).json()
    third = (await shop.http.get("/api/v1/products", params={"pageSize": 2, "page": 3})).json()
    names = [p["name"] for p in first["items"] + second["items"] + third["items"]]
    assert names == sorted(names) and len(names) == 5 and first["total"] == 5
    assert third["page"] == 3 and third["pageSize"] == 2
    assert second["total"] == third["total"] == 5
    # The total is counted for a page past the end, and with words and a category too.
    past = (await shop.http.get("/api/v1/products", params={"pageSize": 2, "page": 4})).json()
    assert past["items"] == [] and past["total"] == 5
    for number, expected in ((2, ["Red mug"]), (3, [])):
        params = {"q": "mug", "category": "kitchen", "pageSize": 1, "page": number}
        found = (await shop.http.get("/api/v1/products", params=params)).json()
        assert [p["name"] for p in found["items"]] == expected and found["total"] == 2
    nothing = (await shop.http.get("/api/v1/products", params={"q": "teapot"})).json()
    assert nothing["items"] == [] and nothing["total"] == 0

    for bad in ({"pageSize": 0}, {"pageSize": 101}, {"page": 0}, {"sort": "random"}):
        problem(await shop.http.get("/api/v1/products", params=bad), 422)


async def test_search_follows_changes_and_folds_case_beyond_ascii(shop: Shop) -> None:
    async def names(words: str) -> list[str]:
        found = (await shop.http.get("/api/v1/products", params={"q": words})).json()
        return [p["name"] for p in found["items"]]

    made = await shop.create(name="Éclair tin", description="For pâtisserie", price=9)
    assert await names("ÉCLAIR") == ["Éclair tin"] and await names("PÂTISSERIE") == ["Éclair tin"]
    url = f"/api/v1/products/{made['productId']}"
    changed = await shop.http.patch(url, json={"name": "Cake tin"}, headers=shop.admin)
    assert changed.status_code == 200, changed.text
    assert await names("éclair") == [] and await names("cake pâtisserie") == ["Cake tin"]
    changed = await shop.http.patch(url, json={"description": "Ovenproof"}, headers=shop.admin)
    assert changed.status_code == 200, changed.text
    assert await names("pâtisserie") == [] and await names("TIN ovenPROOF") == ["Cake tin"]


async def test_views_publish_product_viewed_with_the_viewer(shop: Shop) -> None:
    product_id = (await shop.create(name="Lamp", price=30))["productId"]
    assert (await shop.http.get(f"/api/v1/products/{product_id}")).status_code == 200
    await shop.http.get(f"/api/v1/products/{product_id}", headers=shop.customer)
    views = await shop.events("ProductViewed")
    assert views[0].data.get("userId") is None
    assert views[1].data["userId"] and views[1].data["productId"] == product_id
    problem(await shop.http.get("/api/v1/products/no-such-thing"), 404)
    assert len(await shop.events("ProductViewed")) == 2
    # The browsing session the client names goes along (recommendation's "also viewed").
    session = {"X-Session-ID": "tab-7"}
    await shop.http.get(f"/api/v1/products/{product_id}", headers=session)
    assert (await shop.events("ProductViewed"))[2].data["sessionId"] == "tab-7"
    too_long = {"X-Session-ID": "x" * 201}
    problem(await shop.http.get(f"/api/v1/products/{product_id}", headers=too_long), 422)


async def test_customers_and_strangers_are_refused_admin_routes(shop: Shop) -> None:
    product_id = (await shop.create(name="Lamp", price=30))["productId"]
    body = {"name": "Sneaky", "price": 1}
    problem(await shop.http.post("/api/v1/products", json=body, headers=shop.customer), 403)
    problem(await shop.http.post("/api/v1/products", json=body), 401)
    url = f"/api/v1/products/{product_id}"
    problem(await shop.http.patch(url, json={"price": 0}, headers=shop.customer), 403)
    problem(await shop.http.delete(url, headers=shop.customer), 403)
    assert (await shop.http.get(url)).json()["price"] == 30
    assert len(await shop.events("ProductCreated")) == 1
    assert await shop.events("ProductUpdated") == []
    assert await shop.events("ProductDeleted") == []


async def test_bad_bodies_are_422_and_change_nothing(shop: Shop) -> None:
    product_id = (await shop.create(name="Lamp", price=30))["productId"]
    for body in (
        {"price": 5},
        {"name": "", "price": 5},
        {"name": "x", "price": -1},
        {"name": "x", "price": 1.234},
        {"name": "x", "price": 1, "currency": "usd"},
        {"name": "x", "price": 1, "quantity": -3},
        {"name": "x", "price": 1, "colour": "red"},
        {"name": "   ", "price": 1},
    ):
        problem(await shop.http.post("/api/v1/products", json=body, headers=shop.admin), 422)
    url = f"/api/v1/products/{product_id}"
    for change in ({}, {"price": "abc"}, {"currency": "EUR"}, {"name": ""}, {"tags": []}):
        problem(await shop.http.patch(url, json=change, headers=shop.admin), 422)
    problem(
        await shop.http.patch("/api/v1/products/nope", json={"price": 1}, headers=shop.admin), 404
    )
    assert len(await shop.events("ProductCreated")) == 1
    assert await shop.events("ProductUpdated") == []


async def test_create_honours_the_idempotency_key(shop: Shop) -> None:
    headers = {**shop.admin, "Idempotency-Key": "lamp-1"}
    body = {"name": "Lamp", "price": 30}
    first = await shop.http.post("/api/v1/products", json=body, headers=headers)
    again = await shop.http.post("/api/v1/products", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["productId"] == again.json()["productId"]
    assert len(await shop.events("ProductCreated")) == 1


async def test_availability_follows_stock_updates_in_event_time(shop: Shop) -> None:
    product_id = (await shop.create(name="Lamp", price=30, quantity=5))["productId"]
    ctx = shop.system.hosts["catalog"].ctx
    assert ctx is not None
    now = datetime.now(UTC)

    async def report(quantity: int, at: datetime) -> None:
        cause = Envelope(type="StockUpdated", source="mercato/inventory", data={}, time=at)
        async with ctx.transaction(cause) as uow:
            await show_stock(StockUpdated(productId=product_id, quantity=quantity), uow)

    await report(3, now)
    await report(9, now - timedelta(seconds=5))  # late, older report: ignored
    await report(3, now)  # a redelivery: same answer
    assert (await shop.http.get(f"/api/v1/products/{product_id}")).json()["available"] == 3
    await report(0, now + timedelta(seconds=1))
    assert (await shop.http.get(f"/api/v1/products/{product_id}")).json()["available"] == 0
    await report(4, now)  # for a product nobody knows: nothing happens, nothing fails
    # Through the bus too: inventory's event reaches the handler.
    envelope = Envelope(
        type="StockUpdated",
        source="mercato/inventory",
        subject=product_id,
        time=now + timedelta(seconds=10),
        data=StockUpdated(productId=product_id, quantity=11).dump(),
    )
    assert await shop.system.bus.publish([("inventory.StockUpdated", envelope)]) == [True]

    async def shown() -> bool:
        product = (await shop.http.get(f"/api/v1/products/{product_id}")).json()
        return bool(product["available"] == 11)

    await eventually(shown)


async def test_validate_items_confirms_live_products_and_prices(shop: Shop) -> None:
    live = (await shop.create(name="Lamp", price=30.5))["productId"]
    off = (await shop.create(name="Old lamp", price=3, active=False))["productId"]
    gone = (await shop.create(name="Gone lamp", price=3))["productId"]
    await shop.http.delete(f"/api/v1/products/{gone}", headers=shop.admin)
    ctx = shop.system.hosts["gateway"].ctx
    assert ctx is not None
    stub = CatalogStub(ctx.channel("catalog"))

    def items(*pairs: tuple[str, int]) -> pb.ValidateItemsRequest:
        return pb.ValidateItemsRequest(
            items=[pb.ItemRequest(product_id=p, quantity=q) for p, q in pairs]
        )

    reply = await stub.ValidateItems(items((live, 2)), timeout=5)
    [item] = reply.items
    assert (item.product_id, item.quantity, item.name) == (live, 2, "Lamp")
    assert Decimal(item.price.amount) == Decimal("30.50") and item.price.currency == "USD"
    refusals = [
        (items((live, 1), ("never", 1)), grpc.StatusCode.NOT_FOUND),
        (items((off, 1)), grpc.StatusCode.FAILED_PRECONDITION),
        (items((gone, 1)), grpc.StatusCode.FAILED_PRECONDITION),
        (items((live, 0)), grpc.StatusCode.INVALID_ARGUMENT),
        (items((live, 10**9)), grpc.StatusCode.INVALID_ARGUMENT),
        (items(), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, code in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ValidateItems(request, timeout=5)
        assert refused.value.code() == code


async def test_inactive_products_are_hidden_except_from_admins(shop: Shop) -> None:
    off = (await shop.create(name="Old lamp", price=3, active=False))["productId"]
    problem(await shop.http.get(f"/api/v1/products/{off}", headers=shop.customer), 404)
    seen = await shop.http.get(f"/api/v1/products/{off}", headers=shop.admin)
    assert seen.status_code == 200 and seen.json()["active"] is False
    params = {"includeInactive": "true"}
    problem(await shop.http.get("/api/v1/products", params=params, headers=shop.customer), 403)
    listed = await shop.http.get("/api/v1/products", params=params, headers=shop.admin)
    assert [p["productId"] for p in listed.json()["items"]] == [off]


async def test_demo_catalog_loads_once_across_restarts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, demo_catalog=True)
    async with running(services(), settings) as (_system, http):
        first = (await http.get("/api/v1/products", params={"pageSize": 100})).json()
        admin = await bearer(http, ADMIN)
        demo_id = first["items"][0]["productId"]
        await http.delete(f"/api/v1/products/{demo_id}", headers=admin)
    assert first["total"] >= 5
    async with running(services(), settings) as (system, http):
        again = (await http.get("/api/v1/products", params={"pageSize": 100})).json()
        ctx = system.hosts["catalog"].ctx
        assert ctx is not None
        async with ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope))).all()
        created = [r for r in rows if Envelope.from_json(r.envelope).type == "ProductCreated"]
    # Not reloaded: the deleted demo product stays deleted, and nothing was created twice.
    assert again["total"] == first["total"] - 1
    assert len(created) == first["total"]
