"""What the audit tests share, embedded and on RabbitMQ + PostgreSQL: an order from the checkout
to the delivery, and its story read back."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from mercato.platform.bus.port import EventBus
from mercato.platform.runtime.system import System, create_app
from mercato.platform.storage.database import open_database, service_url
from mercato.services import all_services
from mercato.services.audit.tables import events
from tests.conftest import eventually
from tests.e2e import test_saga as saga
from tests.support import test_settings as make_settings

# The saga of an order that is delivered, from the checkout on: each of these at least once.
DELIVERED = [
    "CartCheckedOut",
    "OrderCreated",
    "PaymentInitiated",
    "PaymentCompleted",
    "OrderPaid",
    "StockReserved",
    "ShipmentCreated",
    "ShipmentDelivered",
    "OrderCompleted",
    "StockDeducted",
]


@asynccontextmanager
async def audited_shop(
    data_dir: Path, database_url: str | None = None, bus: EventBus | None = None, **overrides: Any
) -> AsyncIterator[tuple[saga.Shop, System]]:
    """Every service in this process (on ``bus``, default the configured one), and the shop's
    client on its app; as ``test_saga.open_shop``, keeping the system (its bus)."""
    settings = make_settings(
        data_dir,
        admin_email=saga.ADMIN["email"],
        admin_password=saga.ADMIN["password"],
        database_url=database_url,
        auth_rate_limit=10_000,
        **overrides,
    )
    system = System(all_services(), settings, bus=bus)
    app = create_app(system)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mercato.test") as http:
            shop = saga.Shop(http, settings)
            shop.admin = await shop.sign_in(saga.ADMIN["email"], saga.ADMIN["password"])
            try:
                yield shop, system
            finally:
                for engine in shop.engines.values():
                    await engine.dispose()


async def checked_out_and_delivered(shop: saga.Shop) -> tuple[dict[str, str], str]:
    """A customer's cart checked out, and the order delivered; (customer, order id)."""
    who = await shop.customer()
    cup = await shop.product(price=4.5, quantity=20)
    added = await shop.http.post(
        "/api/v1/cart/items", json={"productId": cup, "quantity": 2}, headers=who
    )
    assert added.status_code == 200, added.text
    checkout = await shop.http.post(
        "/api/v1/cart/checkout",
        json={"payment": saga.card(), "shippingAddress": saga.ADDRESS},
        headers=who,
    )
    assert checkout.status_code == 202, checkout.text
    order_id = checkout.json()["orderId"]

    async def placed() -> bool:  # the order service makes it from CartCheckedOut
        got = await shop.http.get(f"/api/v1/orders/{order_id}", headers=who)
        return got.status_code == 200

    await eventually(placed, timeout=15)
    order = await shop.reaches(who, order_id, "DELIVERING")
    await shop.carrier(order["shipmentId"], "delivered")
    await shop.wait(who, order_id, "COMPLETED")
    return who, order_id


async def story_of(shop: saga.Shop, order_id: str, *needed: str) -> dict[str, Any]:
    """The order's story over HTTP, once the log has every type in ``needed``."""

    async def complete() -> dict[str, Any] | None:
        got = await shop.http.get(f"/api/v1/admin/orders/{order_id}/story", headers=shop.admin)
        if got.status_code != 200:
            return None
        story: dict[str, Any] = got.json()
        types = {e["type"] for e in story["events"]}
        return story if set(needed) <= types else None

    found: dict[str, Any] = await eventually(complete, timeout=15)
    return found


def check_story(story: dict[str, Any], order_id: str) -> None:
    """Every event once, in time order, linked by correlation and causation ids."""
    items = story["events"]
    assert story["orderId"] == order_id
    ids = [e["id"] for e in items]
    assert len(ids) == len(set(ids)), "every event once"
    types = [e["type"] for e in items]
    for earlier, later in itertools.pairwise(DELIVERED):
        if earlier == "StockReserved" or later == "StockReserved":
            continue  # reserved alongside the payment, in either order
        assert types.index(earlier) < types.index(later), (earlier, later, types)
    assert items[0]["type"] == "CartCheckedOut" and items[0]["sinceFirstMs"] == 0
    times = [e["sinceFirstMs"] for e in items]
    assert times == sorted(times)
    assert all(e["correlationId"] == order_id for e in items)
    known = set(ids)
    # Caused by a request, not an event: the checkout and the carrier's callback.
    roots = {e["type"] for e in items if e["causationId"] is None}
    assert roots == {"CartCheckedOut", "ShipmentDelivered"}, roots
    for e in items:
        assert e["causationId"] in known | {None}, f"{e['type']} caused by an event of the story"
    assert all(e["source"].startswith("mercato/") for e in items)
    by_type = {e["type"]: e for e in items}
    assert by_type["OrderCreated"]["causationId"] == by_type["CartCheckedOut"]["id"]
    assert by_type["OrderCompleted"]["causationId"] == by_type["ShipmentDelivered"]["id"]


async def stored_copies(shop: saga.Shop) -> Counter[str]:
    """How many rows each event id has in audit's log."""
    url = service_url(shop.settings.database_url, "audit", shop.settings.data_dir)
    db = open_database(url, 2)
    try:
        async with db.connect() as conn:
            rows = (await conn.execute(sa.select(events.c.event_id))).all()
    finally:
        await db.dispose()
    return Counter(row.event_id for row in rows)


async def displayed_stock(shop: saga.Shop) -> dict[str, tuple[int, Any]]:
    """catalog's read model: each product's displayed availability and the report's time."""
    from mercato.services.catalog.tables import products

    db = open_database(
        service_url(shop.settings.database_url, "catalog", shop.settings.data_dir), 2
    )
    try:
        async with db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(products.c.id, products.c.available, products.c.stock_at)
                )
            ).all()
    finally:
        await db.dispose()
    return {row.id: (row.available, row.stock_at) for row in rows}


async def wipe_and_rebuild(shop: saga.Shop) -> dict[str, tuple[int, Any]]:
    """catalog's displayed stock wiped, then rebuilt from audit's log; (the live model before)."""
    from mercato.services.audit import store
    from mercato.services.catalog.rebuild import rebuild_displayed_stock, wipe_displayed_stock

    live = await displayed_stock(shop)
    assert any(available for available, _ in live.values())
    url = lambda name: service_url(shop.settings.database_url, name, shop.settings.data_dir)  # noqa: E731
    catalog_db, audit_db = open_database(url("catalog"), 2), open_database(url("audit"), 2)
    try:
        assert await wipe_displayed_stock(catalog_db) == len(live)
        wiped = await displayed_stock(shop)
        assert all(value == (0, None) for value in wiped.values())
        stored = store.oldest_first(audit_db, store.EventFilter(type="StockUpdated"), chunk=7)
        done = await rebuild_displayed_stock(catalog_db, stored)
        assert done.consumer.startswith("catalog.stock-rebuild.") and done.events > 0
    finally:
        await catalog_db.dispose()
        await audit_db.dispose()
    return live
