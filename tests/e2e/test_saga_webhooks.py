"""The order saga with webhooks, end to end through the public API (embedded, as
``tests/e2e/test_saga.py``): an order's whole life arrives at receivers on loopback, signed,
each event once per subscription, causes before their effects; with the receiver down for a
while, it all arrives later."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.tables import outbox
from tests.conftest import eventually
from tests.e2e.test_saga import Shop, delivering, open_shop
from tests.services.webhooks.receiver import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOOKS = "/api/v1/admin/webhooks"
STATUSES = ["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    async for opened in open_shop(
        tmp_path_factory.mktemp("webhooks"),
        webhook_allow_private_targets=True,
        webhook_retry_base=0.05,
        webhook_retry_max=0.3,
        webhook_max_attempts=100,
        webhook_poll_interval=0.05,
        webhook_order_settle=0.2,
        webhook_breaker_failures=5,
        webhook_breaker_pause=0.3,
    ):
        yield opened


async def subscribe(shop: Shop, receiver: Receiver, types: list[str]) -> dict[str, Any]:
    body = {"url": receiver.url, "eventTypes": types}
    made = await shop.http.post(HOOKS, json=body, headers=shop.admin)
    assert made.status_code == 201, made.text
    receiver.secret = made.json()["secret"]
    return dict(made.json())


async def published(shop: Shop, order_id: str) -> dict[str, dict[str, Any]]:
    """Every event about the order, from the outboxes of the services that publish them."""
    found: dict[str, dict[str, Any]] = {}
    for service in ("order", "payment", "inventory", "shipping"):
        url = service_url(shop.settings.database_url, service, shop.settings.data_dir)
        db = open_database(url)
        try:
            async with db.connect() as conn:
                query = select(outbox.c.envelope).where(outbox.c.aggregate == order_id)
                for row in (await conn.execute(query)).all():
                    event = json.loads(row.envelope)
                    found[event["id"]] = event
        finally:
            await db.dispose()
    return found


async def completed_order(shop: Shop) -> tuple[str, dict[str, dict[str, Any]]]:
    """A new order, completed, and all the events of its life (the last one, inventory's
    StockDeducted, published)."""
    ada = await shop.customer()
    _, order_id, shipment_id = await delivering(shop, ada)
    await shop.carrier(shipment_id, "delivered")
    await shop.wait(ada, order_id, "COMPLETED")

    async def whole_life() -> dict[str, dict[str, Any]] | None:
        found = await published(shop, order_id)
        return found if "StockDeducted" in {e["type"] for e in found.values()} else None

    return order_id, await eventually(whole_life, timeout=10)


def assert_whole_life_in_order(receiver: Receiver, order_id: str, expected: set[str]) -> None:
    got = receiver.events(order_id)
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)), "each event once"
    assert set(ids) == expected
    webhook_ids = [r.webhook_id for r in receiver.received]
    assert len(webhook_ids) == len(set(webhook_ids))
    place = {event_id: n for n, event_id in enumerate(ids)}
    for event in got:  # a cause arrives before its effects
        cause = event.get("causationid")
        if cause in place:
            assert place[cause] < place[event["id"]], (event["type"], "before its cause")
    for source in {e["source"] for e in got}:  # and each publisher's events in their order
        times = [e["time"] for e in got if e["source"] == source]
        assert times == sorted(times), source
    statuses = [e["data"]["status"] for e in got if e["type"] == "OrderStatusChanged"]
    assert statuses == STATUSES


async def test_an_orders_life_arrives_signed_once_per_subscription_in_order(shop: Shop) -> None:
    everything, statuses = Receiver(), Receiver()
    await everything.start()
    await statuses.start()
    try:
        await subscribe(shop, everything, ["*"])
        await subscribe(shop, statuses, ["OrderStatusChanged", "OrderCompleted"])
        order_id, expected = await completed_order(shop)
        kinds = {e["type"] for e in expected.values()}
        assert {"OrderCreated", "PaymentCompleted", "StockReserved", "ShipmentDelivered"} <= kinds
        await eventually(lambda: len(everything.events(order_id)) >= len(expected), timeout=15)
        assert_whole_life_in_order(everything, order_id, set(expected))
        assert not everything.refused and not statuses.refused
        wanted = {
            i for i, e in expected.items() if e["type"] in ("OrderStatusChanged", "OrderCompleted")
        }
        await eventually(lambda: len(statuses.events(order_id)) >= len(wanted), timeout=15)
        got = statuses.events(order_id)
        assert [e["id"] for e in got] == sorted(wanted, key=lambda i: expected[i]["time"])
        assert [e["type"] for e in got][-1] == "OrderCompleted"
    finally:
        await everything.stop()
        await statuses.stop()
        for hook in (await shop.http.get(HOOKS, headers=shop.admin)).json()["items"]:
            await shop.http.delete(f"{HOOKS}/{hook['id']}", headers=shop.admin)


async def test_a_receiver_down_for_a_while_gets_everything_later(shop: Shop) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        made = await subscribe(shop, receiver, ["*"])
        await receiver.down()
        order_id, expected = await completed_order(shop)

        async def retried() -> bool:
            found = await shop.http.get(
                f"{HOOKS}/{made['id']}/deliveries", params={"limit": 100}, headers=shop.admin
            )
            return any(len(d["attempts"]) >= 2 for d in found.json()["items"])

        await eventually(retried, timeout=15)
        assert receiver.received == []
        await receiver.up()
        await eventually(lambda: len(receiver.events(order_id)) >= len(expected), timeout=20)
        assert_whole_life_in_order(receiver, order_id, set(expected))
        listed = await shop.http.get(
            f"{HOOKS}/{made['id']}/deliveries", params={"limit": 100}, headers=shop.admin
        )
        failed = [a for d in listed.json()["items"] for a in d["attempts"] if a["error"]]
        assert failed and all(a["statusCode"] is None for a in failed)  # refused connections
    finally:
        await receiver.stop()


async def test_the_webhooks_routes_are_in_the_openapi_document(shop: Shop, tmp_path: Path) -> None:
    document = (await shop.http.get("/openapi.json")).json()
    assert f"{HOOKS}/{{subscriptionId}}/deliveries" in document["paths"]
    assert f"{HOOKS}/deliveries/{{deliveryId}}/redrive" in document["paths"]
