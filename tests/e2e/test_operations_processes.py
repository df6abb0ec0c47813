"""The operator's routes with every service its own ``mercato serve`` process, on RabbitMQ (a
virtual host of the test's own) and PostgreSQL: a poison event published to the broker is
listed, inspected, redriven (it fails again) and discarded over the gateway's HTTP port; the
system's health; a product restocked while its stock is read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercato.bench.system import rabbitmq_vhost
from mercato.platform.bus.rabbitmq import RabbitBus
from mercato.platform.envelope import AMQP_PREFIX, Envelope
from tests.conftest import eventually
from tests.e2e.processes import serving
from tests.e2e.test_operations import ADMIN, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]
NAMES = ("identity", "catalog", "inventory", "gateway")


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[str]:
    name = f"mercato_ops_{uuid.uuid4().hex[:10]}"
    if not await asyncio.to_thread(rabbitmq_vhost, name, True):
        pytest.skip("rabbitmqctl cannot make a virtual host of the test's own")
    try:
        yield f"{rabbitmq_url.rstrip('/')}/{name}"
    finally:
        await asyncio.to_thread(rabbitmq_vhost, name, False)


@pytest.fixture
async def http(postgres_template: str, broker: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with (
        serving(
            NAMES,
            broker_url=broker,
            postgres_template=postgres_template,
            data_dir=tmp_path,
            admin=ADMIN,
            max_attempts="2",
            database_pool_size="2",  # the PostgreSQL server is shared: few connections each
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=20) as client,
    ):
        yield client


async def test_operators_routes_as_processes_on_rabbitmq_and_postgres(
    http: httpx.AsyncClient, broker: str
) -> None:
    admin = await sign_in(http, ADMIN["email"], ADMIN["password"])
    who = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
    assert (await http.post("/api/v1/auth/register", json=who)).status_code == 201
    customer = await sign_in(http, who["email"], who["password"])
    for path in ("/api/v1/admin/dead-letters", "/api/v1/admin/system"):
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers=customer)).status_code == 403

    # A poison event on the broker: an OrderCreated whose payload fails its model.
    envelope = Envelope(type="OrderCreated", source="mercato/order", data={"orderId": [1]})
    headers, body = envelope.to_binary(AMQP_PREFIX)
    bus = RabbitBus(broker)
    await bus.connect()
    try:
        await bus.publish_raw("order.OrderCreated", headers, body)
    finally:
        await bus.close()

    async def listed() -> list[dict[str, Any]]:
        answer = await http.get("/api/v1/admin/dead-letters", headers=admin)
        assert answer.status_code == 200, answer.text
        return [x for x in answer.json()["items"] if x["eventId"] == envelope.id]

    [letter] = await eventually(listed, timeout=30)
    assert (letter["service"], letter["eventType"], letter["status"]) == (
        "inventory",
        "OrderCreated",
        "open",
    )
    url = f"/api/v1/admin/dead-letters/{letter['id']}"
    shown = (await http.get(url, headers=admin)).json()
    assert shown["envelope"]["id"] == envelope.id and shown["envelope"]["data"] == {"orderId": [1]}
    again = await http.post(f"{url}/redrive", headers=admin)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "open" and again.json()["attempts"] == letter["attempts"] + 1
    reason = "a malformed test event"
    discarded = await http.post(f"{url}/discard", json={"reason": reason}, headers=admin)
    assert discarded.status_code == 200, discarded.text
    assert (discarded.json()["status"], discarded.json()["discardReason"]) == ("discarded", reason)
    kept = await http.get(
        "/api/v1/admin/dead-letters", params={"status": "discarded"}, headers=admin
    )
    assert [x["id"] for x in kept.json()["items"]] == [letter["id"]]

    system = await http.get("/api/v1/admin/system", headers=admin)
    assert system.status_code == 200, system.text
    services = {s["name"]: s for s in system.json()["services"]}
    assert set(services) == set(NAMES)
    assert all(s["ready"] and s["outboxBacklog"] is not None for s in services.values()), services
    assert services["inventory"]["deadLetters"] == 0  # the one there is discarded

    # Restocked twice at once, and once more under a key retried.
    made = await http.post(
        "/api/v1/products", json={"name": "Mug", "price": 3, "quantity": 4}, headers=admin
    )
    assert made.status_code == 201, made.text
    product = made.json()["productId"]

    async def stocked() -> bool:
        answer = await http.get(f"/api/v1/inventory/{product}", headers=admin)
        return answer.status_code == 200

    await eventually(stocked, timeout=30)

    async def restock(quantity: int, key: str) -> httpx.Response:
        # As a client does: with a key, retried while the service answers 503 (a shared
        # PostgreSQL server may refuse a connection for a moment).
        while True:
            answer = await http.post(
                f"/api/v1/inventory/{product}/restock",
                json={"quantity": quantity},
                headers={**admin, "Idempotency-Key": key},
            )
            if answer.status_code != 503:
                return answer
            await asyncio.sleep(0.2)

    answers = await asyncio.gather(
        restock(5, "a"), restock(6, "b"), restock(1, "c"), restock(1, "c")
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    now = (await http.get(f"/api/v1/inventory/{product}", headers=admin)).json()
    assert (now["onHand"], now["available"], now["reserved"]) == (16, 16, 0)
    assert sorted(m["quantity"] for m in now["movements"] if m["kind"] == "restocked") == [1, 5, 6]
