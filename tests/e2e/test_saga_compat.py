"""The compatibility routes of docs/design.md, in their seeds' shapes, against the whole system
embedded: ``seeds/003`` (``/api/v1/orders/create|cancel|list|status|status_change_list``) and
``seeds/004`` (``/oms/orders`` with ``{success, data, error}``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest
import pytest_asyncio

from mercato.api.common.v1 import common_pb2
from mercato.api.payment.v1 import payment_pb2
from mercato.api.payment.v1.payment_pb2_grpc import PaymentStub
from mercato.platform.runtime.system import System
from mercato.services import all_services
from tests.conftest import eventually
from tests.e2e.test_saga import ADMIN, Shop
from tests.support import running
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

CARD_PARAMS = "4242 4242 4242 4242; 123; Ivan Ivanov"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Shop, System]]:
    settings = make_settings(
        tmp_path_factory.mktemp("compat"),
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
    )
    async with running(all_services(), settings) as (system, http):
        shop = Shop(http, settings)
        shop.admin = await shop.sign_in(ADMIN["email"], ADMIN["password"])
        yield shop, system


async def top_up(shop: Shop, system: System, who: dict[str, str], amount: str) -> None:
    """Store credit for a customer (the seed-004 order has no card: it pays from the wallet)."""
    me = (await shop.http.get("/api/v1/users/me", headers=who)).json()
    metadata = [("authorization", shop.admin["Authorization"])]
    async with grpc.aio.insecure_channel(system.grpc_targets["payment"]) as channel:
        stub = PaymentStub(channel)  # type: ignore[no-untyped-call]
        await stub.TopUpWallet(
            payment_pb2.TopUpWalletRequest(
                user_id=me["userId"], amount=common_pb2.Money(amount=amount, currency="USD")
            ),
            metadata=metadata,
        )


def seed_003_order(order_id: str, *product_ids: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "products": {"option": [{"id": p, "name": "Товар1", "price": 1} for p in product_ids]},
        "shippingTo": "ул. Ленина, д. 12, кв. 51",
        "cardParams": CARD_PARAMS,
        "status": "CREATED",
    }


async def test_seed_003_create_list_status_history_and_cancel(
    world: tuple[Shop, System],
) -> None:
    shop, _ = world
    ivan = await shop.customer()
    cup = await shop.product(price=12.5, quantity=10)
    created = await shop.http.post(
        "/api/v1/orders/create", json=seed_003_order("ord-003-1", cup, cup), headers=ivan
    )
    assert created.status_code == 200, created.text
    order = created.json()
    assert order["id"] == "ord-003-1" and order["status"] == "CREATED"
    assert order["products"]["option"] == [{"id": cup, "name": cup, "price": 12.5}] * 2
    assert order["shippingTo"] == "ул. Ленина, д. 12, кв. 51"
    assert order["cardParams"] == "**** **** **** 4242"
    again = await shop.http.post(
        "/api/v1/orders/create", json=seed_003_order("ord-003-1", cup), headers=ivan
    )
    assert again.status_code == 409

    listed = (await shop.http.get("/api/v1/orders/list", headers=ivan)).json()
    assert [o["id"] for o in listed] == ["ord-003-1"]

    async def delivered() -> bool:
        status = await shop.http.get(
            "/api/v1/orders/status", params={"id": "ord-003-1"}, headers=ivan
        )
        return bool(status.json() == {"id": "ord-003-1", "status": "DELIVERED", "settled": True})

    await eventually(delivered, timeout=10)
    cancelled = await shop.http.post(
        "/api/v1/orders/cancel", params={"orderID": "ord-003-1"}, headers=ivan
    )
    assert cancelled.json()["status"] == "CANCELED"
    changes = (
        await shop.http.get(
            "/api/v1/orders/status_change_list", params={"id": "ord-003-1"}, headers=ivan
        )
    ).json()
    assert [(c["previousStatus"], c["status"]) for c in changes] == [
        (None, "CREATED"),
        ("CREATED", "PAYED"),
        ("PAYED", "RESERVED"),
        ("RESERVED", "DELIVERED"),
        ("DELIVERED", "CANCELED"),
    ]
    assert all(c["orderId"] == "ord-003-1" and c["time"] for c in changes)


async def test_seed_003_refuses_what_it_must(world: tuple[Shop, System]) -> None:
    shop, _ = world
    ivan, petr = await shop.customer(), await shop.customer()
    cup = await shop.product()
    body = seed_003_order("ord-003-2", cup)
    other = await shop.http.post(
        "/api/v1/orders/create", params={"currentUserId": "someone"}, json=body, headers=ivan
    )
    assert other.status_code == 403
    bad_card = {**body, "cardParams": "4242 4242 4242 4241; 123; Ivan"}
    refused = await shop.http.post("/api/v1/orders/create", json=bad_card, headers=ivan)
    assert refused.status_code == 422 and "4241" not in refused.text
    assert (
        await shop.http.post(
            "/api/v1/orders/create", json={**body, "products": {"option": []}}, headers=ivan
        )
    ).status_code == 422
    assert (await shop.http.post("/api/v1/orders/create", json=body)).status_code == 401
    await shop.http.post("/api/v1/orders/create", json=body, headers=ivan)
    hidden = await shop.http.get("/api/v1/orders/status", params={"id": "ord-003-2"}, headers=petr)
    assert hidden.status_code == 404
    assert (await shop.http.get("/api/v1/orders/list", headers=petr)).json() == []


async def test_seed_003_ids_are_each_users_own(world: tuple[Shop, System]) -> None:
    """An id a client chooses names its own user's order: another user choosing it makes
    their own order (no 409 to tell them it exists, nothing taken from the first)."""
    shop, _ = world
    ivan, petr = await shop.customer(), await shop.customer()
    cup = await shop.product(quantity=10)
    for who in (ivan, petr):
        made = await shop.http.post(
            "/api/v1/orders/create", json=seed_003_order("ord-shared", cup), headers=who
        )
        assert made.status_code == 200, made.text
        assert made.json()["id"] == "ord-shared"
    ivans, petrs = [
        (await shop.http.get("/api/v1/orders", headers=who)).json()["items"] for who in (ivan, petr)
    ]
    assert len(ivans) == len(petrs) == 1 and ivans[0]["orderId"] != petrs[0]["orderId"]
    # A customer cannot name another's order by its full id through these routes either.
    status = await shop.http.get(
        "/api/v1/orders/status", params={"id": ivans[0]["orderId"]}, headers=petr
    )
    assert status.status_code == 404
    cancel = await shop.http.post(
        "/api/v1/orders/cancel", params={"orderID": ivans[0]["orderId"]}, headers=petr
    )
    assert cancel.status_code == 404
    mine = await shop.http.get("/api/v1/orders/status", params={"id": "ord-shared"}, headers=petr)
    assert mine.json()["id"] == "ord-shared"


async def test_seed_004_create_get_and_cancel_with_item_statuses(
    world: tuple[Shop, System],
) -> None:
    shop, system = world
    ana = await shop.customer()
    await top_up(shop, system, ana, "100")
    me = (await shop.http.get("/api/v1/users/me", headers=ana)).json()
    cup = await shop.product(price=20, quantity=5)
    created = await shop.http.post(
        "/oms/orders",
        json={"userId": me["userId"], "orderItems": [{"productId": cup, "quantity": 2}]},
        headers=ana,
    )
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["success"] is True and answer["error"] is None
    order = answer["data"]
    assert order["userId"] == me["userId"] and order["totalAmount"] == 40
    assert order["orderItems"] == [
        {"productId": cup, "quantity": 2, "price": 20.0, "status": "PENDING"}
    ]
    order_id = order["orderId"]

    async def executed() -> dict[str, Any] | None:
        got = (await shop.http.get(f"/oms/orders/{order_id}", headers=ana)).json()
        return got if got["data"]["orderItems"][0]["status"] == "EXECUTED" else None

    got = await eventually(executed, timeout=10)
    assert got["success"] and got["data"]["status"] in ("RESERVED", "DELIVERING")

    rewrite = await shop.http.put(
        f"/oms/orders/{order_id}",
        json={"status": "COMPLETED", "orderItems": [{"productId": cup, "quantity": 2}]},
        headers=ana,
    )
    assert rewrite.status_code == 422 and rewrite.json()["success"] is False
    cancelled = await shop.http.put(
        f"/oms/orders/{order_id}", json={"status": "CANCELED"}, headers=ana
    )
    body = cancelled.json()
    assert cancelled.status_code == 200 and body["success"] is True
    assert body["data"]["status"] == "CANCELLED"
    assert [i["status"] for i in body["data"]["orderItems"]] == ["CANCELED"]


async def test_seed_004_errors_keep_its_shape(world: tuple[Shop, System]) -> None:
    shop, _ = world
    ana = await shop.customer()
    missing = await shop.http.get("/oms/orders/nope", headers=ana)
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "data": None, "error": "no such order"}
    for body in [{}, {"orderItems": []}, {"orderItems": [{"productId": "x", "quantity": 0}]}]:
        bad = await shop.http.post("/oms/orders", json=body, headers=ana)
        assert bad.status_code == 422 and bad.json()["success"] is False, body
    unknown = await shop.http.post(
        "/oms/orders", json={"orderItems": [{"productId": "nope", "quantity": 1}]}, headers=ana
    )
    assert unknown.status_code == 404 and unknown.json()["data"] is None
    other = await shop.http.post(
        "/oms/orders",
        json={"userId": "someone", "orderItems": [{"productId": "x", "quantity": 1}]},
        headers=ana,
    )
    assert other.status_code == 403 and json.loads(other.text)["error"] == "userId is not you"
