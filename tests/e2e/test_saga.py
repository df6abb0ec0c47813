"""The order saga end to end through the public API, embedded (one process, in-process bus,
SQLite, MERCATO_CARRIER_DELAY=never so the tests play the carrier): the ten user scenarios of
docs/design.md (``seeds/003``), plus wait, stream and idempotent ordering.

Money is checked in payment's published events (PaymentRefunded); stock through the catalog's
``available`` (inventory's StockUpdated), as a shopper would see it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.settings import Settings
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import outbox
from mercato.services import all_services, load_service
from tests.conftest import eventually
from tests.support import running
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postalCode": "N1 7AA",
    "country": "GB",
}
_people = itertools.count(1)


def card(number: str = GOOD_CARD) -> dict[str, str]:
    return {"method": "card", "cardNumber": number, "expiry": "12/39", "cvc": "123", "holder": "A"}


@dataclass
class Shop:
    http: httpx.AsyncClient
    settings: Settings
    admin: dict[str, str] = field(default_factory=dict)
    engines: dict[str, Database] = field(default_factory=dict)
    system: System | None = None

    async def sign_in(self, email: str, password: str) -> dict[str, str]:
        response = await self.http.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['accessToken']}"}

    async def customer(self) -> dict[str, str]:
        who = {"email": f"shopper{next(_people)}@example.com", "password": "correct horse 9"}
        registered = await self.http.post("/api/v1/auth/register", json={**who, "name": "Ada"})
        assert registered.status_code == 201, registered.text
        return await self.sign_in(who["email"], who["password"])

    async def product(self, price: float = 10, quantity: int = 10) -> str:
        body = {"name": "Espresso cup", "price": price, "quantity": quantity}
        made = await self.http.post("/api/v1/products", json=body, headers=self.admin)
        assert made.status_code == 201, made.text
        product_id = str(made.json()["productId"])
        await self.stock_is(product_id, quantity)  # inventory has it
        return product_id

    async def available(self, product_id: str) -> int | None:
        shown = await self.http.get(f"/api/v1/products/{product_id}")
        value = shown.json()["available"]
        return None if value is None else int(value)

    async def stock_is(self, product_id: str, expected: int) -> None:
        async def check() -> bool:
            return await self.available(product_id) == expected

        await eventually(check, timeout=10)

    async def place(
        self,
        who: dict[str, str],
        items: list[tuple[str, int]],
        payment: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "items": [{"productId": p, "quantity": q} for p, q in items],
            "payment": payment or card(),
            "shippingAddress": ADDRESS,
        }
        placed = await self.http.post(
            "/api/v1/orders", json=body, headers={**who, **(headers or {})}
        )
        assert placed.status_code == 202, placed.text
        assert placed.headers["location"] == f"/api/v1/orders/{placed.json()['orderId']}"
        return dict(placed.json())

    async def wait(self, who: dict[str, str], order_id: str, until: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/orders/{order_id}/wait",
            params={"until": until, "timeout": 10},
            headers=who,
        )
        assert response.status_code == 200, response.text
        answer = dict(response.json())
        assert answer["outcome"] == "reached", answer
        return dict(answer["order"])

    async def order(self, who: dict[str, str], order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/v1/orders/{order_id}", headers=who)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def reaches(self, who: dict[str, str], order_id: str, status: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            order = await self.order(who, order_id)
            return order if order["status"] == status else None

        found: dict[str, Any] = await eventually(check, timeout=10)
        return found

    async def events(self, service: str, event_type: str, order_id: str) -> list[dict[str, Any]]:
        """The events of one order that ``service`` published (from its outbox)."""
        found = await self.events_of_type(service, event_type)
        return [data for data in found if data.get("orderId") == order_id]

    async def events_of_type(self, service: str, event_type: str) -> list[dict[str, Any]]:
        engine = self.engines.get(service)
        if engine is None:
            url = service_url(self.settings.database_url, service, self.settings.data_dir)
            engine = self.engines[service] = open_database(url)
        async with engine.connect() as conn:
            query = select(outbox.c.envelope).where(outbox.c.event_type == event_type)
            rows = (await conn.execute(query.order_by(outbox.c.seq))).all()
        return [Envelope.from_json(r.envelope).data for r in rows]

    async def refunded(self, order_id: str) -> float:
        async def check() -> list[dict[str, Any]]:
            return await self.events("payment", "PaymentRefunded", order_id)

        refunds = await eventually(check, timeout=10)
        assert len(refunds) == 1, "refunded once"
        return float(refunds[0]["amount"])

    async def shipments(self, who: dict[str, str], order_id: str) -> dict[str, dict[str, Any]]:
        response = await self.http.get(
            "/api/v1/shipments", params={"orderId": order_id}, headers=who
        )
        assert response.status_code == 200, response.text
        return {s["kind"]: s for s in response.json()["items"]}

    async def shipment(self, who: dict[str, str], order_id: str, kind: str) -> dict[str, Any]:
        """The order's shipment of ``kind``, once there is one."""

        async def check() -> dict[str, Any] | None:
            return (await self.shipments(who, order_id)).get(kind)

        found: dict[str, Any] = await eventually(check, timeout=10)
        return found

    async def carrier(self, shipment_id: str, outcome: str) -> dict[str, Any]:
        response = await self.http.post(
            f"/api/v1/shipments/{shipment_id}/{outcome}", headers=self.admin
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


async def open_shop(
    data_dir: Path,
    services: list[str] | None = None,
    database_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Shop]:
    settings = make_settings(
        data_dir,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        database_url=database_url,
        auth_rate_limit=10_000,  # many customers sign up from one address here
        **overrides,
    )
    chosen = all_services() if services is None else [load_service(n) for n in services]
    async with running(chosen, settings) as (system, http):
        shop = Shop(http, settings, system=system)
        shop.admin = await shop.sign_in(ADMIN["email"], ADMIN["password"])
        try:
            yield shop
        finally:
            for engine in shop.engines.values():
                await engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    async for opened in open_shop(tmp_path_factory.mktemp("saga")):
        yield opened


def statuses(order: dict[str, Any]) -> list[str]:
    return [h["toStatus"] for h in order["statusHistory"]]


async def delivering(shop: Shop, who: dict[str, str], quantity: int = 2) -> tuple[str, str, str]:
    """Scenarios 1-4: an order placed, paid, reserved and handed to delivery.

    Returns the product, the order id and the delivery's shipment id."""
    cup = await shop.product(price=12.5, quantity=10)
    placed = await shop.place(who, [(cup, quantity)])
    order_id = placed["orderId"]
    # 1. The new order is CREATED and in the customer's list.
    assert placed["status"] == "CREATED" and statuses(placed) == ["CREATED"]
    assert placed["total"] == 12.5 * quantity and placed["payment"]["last4"] == "4242"
    listed = (await shop.http.get("/api/v1/orders", headers=who)).json()
    assert order_id in [o["orderId"] for o in listed["items"]]
    # 2. Paid, and the stock is reserved at the warehouse.
    paid = await shop.wait(who, order_id, "PAID")
    assert paid["payment"]["paid"] and paid["payment"]["paymentId"]
    await shop.stock_is(cup, 10 - quantity)
    # 3. Reserved, its items EXECUTED, and handed to delivery.
    reserved = await shop.wait(who, order_id, "RESERVED")
    assert {i["status"] for i in reserved["items"]} == {"EXECUTED"}
    # 4. Delivering.
    order = await shop.reaches(who, order_id, "DELIVERING")
    assert statuses(order) == ["CREATED", "PAID", "RESERVED", "DELIVERING"]
    assert order["shipment"]["status"] == "IN_TRANSIT" and order["shipment"]["kind"] == "delivery"
    assert order["shipment"]["shipmentId"] == order["shipmentId"]
    return cup, order_id, order["shipmentId"]


async def test_scenarios_1_to_5_created_paid_reserved_delivering_completed(shop: Shop) -> None:
    ada = await shop.customer()
    cup, order_id, shipment_id = await delivering(shop, ada)
    # 5. Delivered: COMPLETED, and the reserved stock leaves for good.
    await shop.carrier(shipment_id, "delivered")
    done = await shop.wait(ada, order_id, "COMPLETED")
    assert statuses(done) == ["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED"]
    shown = await shop.order(ada, order_id)
    assert shown["shipment"]["status"] == "DELIVERED" and shown["returnShipment"] is None
    await eventually(partial(shop.events, "inventory", "StockDeducted", order_id), timeout=10)
    await shop.stock_is(cup, 8)
    assert await shop.events("payment", "PaymentRefunded", order_id) == []
    cancel = await shop.http.post(f"/api/v1/orders/{order_id}/cancel", headers=ada)
    assert cancel.status_code == 422, "a completed order stays completed"


async def test_scenario_6_cancel_after_paying_refunds_and_releases(tmp_path: Path) -> None:
    # Without shipping the paid, reserved order waits for delivery: a cancellation now is one
    # "after paying, before delivery", whatever the timing.
    services = ["identity", "catalog", "inventory", "order", "payment", "gateway"]
    async for shop in open_shop(tmp_path, services):
        ada = await shop.customer()
        cup = await shop.product(price=7, quantity=5)
        order_id = (await shop.place(ada, [(cup, 3)]))["orderId"]
        await shop.wait(ada, order_id, "RESERVED")
        await shop.stock_is(cup, 2)
        reason = {"reason": "found it cheaper"}
        cancelled = await shop.http.post(
            f"/api/v1/orders/{order_id}/cancel", json=reason, headers=ada
        )
        assert cancelled.status_code == 200, cancelled.text
        order = cancelled.json()
        assert order["status"] == "CANCELLED" and order["cancelReason"] == "found it cheaper"
        assert {i["status"] for i in order["items"]} == {"CANCELED"}
        assert await shop.refunded(order_id) == 21
        await shop.stock_is(cup, 5)
        final = await shop.order(ada, order_id)
        assert final["payment"]["refunded"] and statuses(final)[-1] == "CANCELLED"


async def test_scenario_7_cancel_while_delivering_refunds_and_orders_a_return(shop: Shop) -> None:
    ada = await shop.customer()
    cup, order_id, shipment_id = await delivering(shop, ada, quantity=3)
    cancelled = await shop.http.post(f"/api/v1/orders/{order_id}/cancel", headers=ada)
    assert cancelled.json()["status"] == "CANCELLED" and not cancelled.json()["settled"]
    assert await shop.refunded(order_id) == 37.5
    back = await shop.shipment(ada, order_id, "return")
    assert back["returnOf"] == shipment_id and back["status"] == "IN_TRANSIT"
    await shop.stock_is(cup, 7)  # in transit back: still reserved

    # Refunded (once the order has heard of it), but the goods are not back: not settled
    # yet, and the order says why.
    async def refund_heard() -> list[str] | None:
        waiting = await shop.order(ada, order_id)
        assert not waiting["settled"]
        return None if "refund" in waiting["pending"] else list(waiting["pending"])

    assert await eventually(refund_heard) == ["return"]
    await shop.carrier(back["shipmentId"], "delivered")  # back in the warehouse
    settled = await shop.wait(ada, order_id, "settled")
    assert (settled["status"], settled["settled"], settled["pending"]) == ("CANCELLED", True, [])
    await shop.stock_is(cup, 10)


async def test_scenario_8_a_failed_payment_cancels_and_releases(shop: Shop) -> None:
    bo = await shop.customer()
    cup = await shop.product(price=5, quantity=4)
    order_id = (await shop.place(bo, [(cup, 4)], payment=card(DECLINED_CARD)))["orderId"]
    order = await shop.wait(bo, order_id, "settled")
    assert order["status"] == "CANCELLED" and "payment failed" in order["cancelReason"]
    assert not order["payment"]["paid"] and order["pending"] == []
    await shop.stock_is(cup, 4)
    assert await shop.events("payment", "PaymentRefunded", order_id) == []


async def test_scenario_9_a_failed_reservation_cancels_and_refunds(shop: Shop) -> None:
    bo = await shop.customer()
    cup = await shop.product(price=9.99, quantity=1)
    order_id = (await shop.place(bo, [(cup, 2)]))["orderId"]
    order = await shop.wait(bo, order_id, "settled")
    assert order["status"] == "CANCELLED" and "reservation failed" in order["cancelReason"]
    assert order["payment"]["refunded"]  # settled: the refund is done, not on its way
    assert await shop.refunded(order_id) == 19.98
    await shop.stock_is(cup, 1)
    assert await shop.shipments(bo, order_id) == {}


async def test_scenario_10_a_failed_delivery_cancels_refunds_and_returns(shop: Shop) -> None:
    cy = await shop.customer()
    cup, order_id, shipment_id = await delivering(shop, cy)
    failed = await shop.http.post(
        f"/api/v1/shipments/{shipment_id}/failed",
        json={"reason": "nobody home"},
        headers=shop.admin,
    )
    assert failed.json()["status"] == "FAILED"
    order = await shop.wait(cy, order_id, "terminal")
    assert (
        order["status"] == "CANCELLED" and order["cancelReason"] == "delivery failed: nobody home"
    )
    assert await shop.refunded(order_id) == 25
    back = await shop.shipment(cy, order_id, "return")
    assert back["returnOf"] == shipment_id
    await shop.stock_is(cup, 8)
    await shop.carrier(back["shipmentId"], "delivered")
    await shop.stock_is(cup, 10)


async def test_placing_is_idempotent_and_orders_are_private(shop: Shop) -> None:
    ada, bo = await shop.customer(), await shop.customer()
    cup = await shop.product()
    key = {"Idempotency-Key": "ada-order-1"}
    first = await shop.place(ada, [(cup, 1)], headers=key)
    again = await shop.place(ada, [(cup, 1)], headers=key)
    assert again["orderId"] == first["orderId"]
    # The same key with another card ending in the same four digits is another request.
    other = {**card(), "cardNumber": "5555 5555 5559 4242", "cvc": "999", "holder": "Mallory"}
    changed = {"items": [{"productId": cup, "quantity": 1}], "payment": other}
    replayed = await shop.http.post(
        "/api/v1/orders", json={**changed, "shippingAddress": ADDRESS}, headers={**ada, **key}
    )
    assert replayed.status_code == 422, replayed.text
    mine = (await shop.http.get("/api/v1/orders", headers=ada)).json()
    assert [o["orderId"] for o in mine["items"]] == [first["orderId"]]
    for path in ["", "/wait", "/stream"]:
        response = await shop.http.get(f"/api/v1/orders/{first['orderId']}{path}", headers=bo)
        assert response.status_code == 404, (path, response.text)
    assert (await shop.http.get("/api/v1/orders", headers=bo)).json()["items"] == []
    everyone = await shop.http.get("/api/v1/orders", params={"pageSize": 100}, headers=shop.admin)
    assert first["orderId"] in [o["orderId"] for o in everyone.json()["items"]]
    bad = await shop.http.post(
        "/api/v1/orders",
        json={"items": [], "payment": card(), "shippingAddress": ADDRESS},
        headers=ada,
    )
    assert bad.status_code == 422
    unknown = await shop.http.post(
        "/api/v1/orders",
        json={
            "items": [{"productId": "nope", "quantity": 1}],
            "payment": card(),
            "shippingAddress": ADDRESS,
        },
        headers=ada,
    )
    assert unknown.status_code == 404


async def test_the_stream_sends_every_change_until_final(shop: Shop) -> None:
    ada = await shop.customer()
    _, order_id, shipment_id = await delivering(shop, ada)
    streaming = asyncio.ensure_future(
        shop.http.get(f"/api/v1/orders/{order_id}/stream", headers=ada, timeout=30)
    )
    await asyncio.sleep(0.2)
    await shop.carrier(shipment_id, "delivered")
    response = await asyncio.wait_for(streaming, 15)
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/event-stream"
    )
    blocks = [b for b in response.text.split("\n\n") if b.startswith("event: order")]
    seen = [json.loads(b.split("data: ", 1)[1])["status"] for b in blocks]
    assert seen == ["DELIVERING", "COMPLETED"]
    assert response.text.rstrip().endswith(json.dumps({"orderId": order_id}))


RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def times_in(doc: Any) -> list[str]:
    """The values of the keys that name a time (``at``, ``…At``) in a JSON document."""
    if isinstance(doc, list):
        return [t for item in doc for t in times_in(item)]
    if not isinstance(doc, dict):
        return []
    found = []
    for key, value in doc.items():
        if key == "at" or key.endswith("At"):
            found += [value] if value is not None else []
        else:
            found += times_in(value)
    return found


async def test_every_time_the_api_gives_is_utc_written_the_same_way(shop: Shop) -> None:
    """Whichever service a time comes from (catalog, identity, cart, order, shipping)."""
    ada = await shop.customer()
    cup, order_id, shipment_id = await delivering(shop, ada)
    item = {"productId": cup, "quantity": 1}
    answers = [
        (await shop.http.get(f"/api/v1/products/{cup}")).json(),
        (await shop.http.get("/api/v1/users/me", headers=ada)).json(),
        (await shop.http.post("/api/v1/cart/items", json=item, headers=ada)).json(),
        await shop.order(ada, order_id),
        (await shop.http.get(f"/api/v1/shipments/{shipment_id}", headers=ada)).json(),
    ]
    times = times_in(answers)
    assert len(times) >= 12, answers
    assert [t for t in times if not RFC3339_UTC.fullmatch(t)] == []
