"""GETs served by ``LeanRoutes`` answer exactly as FastAPI answers them: the same request
to the gateway's app with and without it gives the same status, headers and body, for every
route it serves, valid and invalid parameters, every kind of caller."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from mercato.services import all_services
from mercato.services.gateway import lean
from mercato.services.gateway.app import create_app
from mercato.services.gateway.routes import LEAN_WRITES, ROUTERS
from tests.support import ADDRESS, ADMIN, PAYMENT, running
from tests.support import test_settings as make_settings

ADA = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
BO = {"email": "bo@example.com", "password": "battery staple 7", "name": "Bo"}
REQUEST_ID = "lean-parity-1"


@dataclass
class Rig:
    lean_http: httpx.AsyncClient
    plain_http: httpx.AsyncClient
    callers: dict[str, dict[str, str]]
    ids: dict[str, str]
    served: list[str]
    http: httpx.AsyncClient  # the system's own, to set the scene between two asks


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    settings = make_settings(
        tmp_path, admin_email=ADMIN["email"], admin_password=ADMIN["password"], wdm_api=True
    )
    async with running(all_services(), settings) as (system, http):
        callers = {"nobody": {}, "forged": {"Authorization": "Bearer not.a.token"}}
        callers["basic"] = {"Authorization": "Basic YTpi"}
        for name, who in (("admin", ADMIN), ("ada", ADA), ("bo", BO)):
            if "name" in who:
                assert (await http.post("/api/v1/auth/register", json=who)).status_code == 201
            login = {"email": who["email"], "password": who["password"]}
            token = (await http.post("/api/v1/auth/login", json=login)).json()["accessToken"]
            callers[name] = {"Authorization": f"Bearer {token}"}
        made = await http.post(
            "/api/v1/products",
            json={"name": "Red mug", "price": 8, "quantity": 50, "category": "kitchen"},
            headers=callers["admin"],
        )
        product = made.json()["productId"]
        await http.post(
            "/api/v1/products",
            json={"name": "Hidden mug", "price": 1, "active": False},
            headers=callers["admin"],
        )
        await asyncio.sleep(0.3)  # inventory takes the stock in
        item = {"productId": product, "quantity": 2}
        assert (
            await http.post("/api/v1/cart/items", json=item, headers=callers["ada"])
        ).status_code == 200
        checkout = {"payment": PAYMENT, "shippingAddress": ADDRESS}
        placed = await http.post("/api/v1/cart/checkout", json=checkout, headers=callers["ada"])
        assert placed.status_code == 202, placed.text
        order = placed.json()["orderId"]
        waited = await http.get(
            f"/api/v1/orders/{order}/wait",
            params={"until": "RESERVED", "timeout": 10},
            headers=callers["ada"],
        )
        assert waited.json()["outcome"] == "reached", waited.text
        for _ in range(100):  # the shipment follows the reservation
            listed = (
                await http.get(
                    "/api/v1/shipments", params={"orderId": order}, headers=callers["ada"]
                )
            ).json()
            if listed["items"]:
                break
            await asyncio.sleep(0.05)
        shipment = listed["items"][0]["shipmentId"]
        me = (await http.get("/api/v1/users/me", headers=callers["ada"])).json()["userId"]
        paid = await http.get("/api/v1/payments", params={"orderId": order}, headers=callers["ada"])
        payment = paid.json()["items"][0]["paymentId"]
        # Inactive, on a public address written out: nothing is sent, nothing resolved.
        hook = {"url": "https://93.184.216.34/hooks", "eventTypes": ["*"], "active": False}
        made = await http.post("/api/v1/admin/webhooks", json=hook, headers=callers["admin"])
        assert made.status_code == 201, made.text
        ctx = system.hosts["gateway"].ctx
        assert ctx is not None
        served: list[str] = []
        serve = lean._Plan.serve

        async def counted(plan: lean._Plan, *args: Any) -> Any:
            served.append(plan.route.path)
            return await serve(plan, *args)

        monkeypatch.setattr(lean._Plan, "serve", counted)
        apps = (create_app(ctx), create_app(ctx, lean=False))
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(apps[0]), base_url="http://t") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(apps[1]), base_url="http://t") as b,
        ):
            ids = {"product": product, "order": order, "shipment": shipment, "user": me}
            ids["payment"] = payment
            ids["hook"] = made.json()["id"]
            yield Rig(a, b, callers, ids, served, http)


Ask = Callable[[str, dict[str, Any] | None, str], Awaitable[None]]


def asker(rig: Rig) -> Ask:
    async def ask(path: str, params: dict[str, Any] | None, caller: str) -> None:
        headers = {**rig.callers[caller], "X-Request-ID": REQUEST_ID}
        lean_answer = await rig.lean_http.get(path, params=params, headers=headers)
        plain_answer = await rig.plain_http.get(path, params=params, headers=headers)
        what = (path, params, caller)
        assert lean_answer.status_code == plain_answer.status_code, what
        assert lean_answer.headers.multi_items() == plain_answer.headers.multi_items(), what
        assert lean_answer.content == plain_answer.content, what

    return ask


LONG = "x" * 201


async def test_lean_answers_are_fastapis(rig: Rig) -> None:
    ask, ids = asker(rig), rig.ids
    everyone = ("nobody", "forged", "basic", "ada", "bo", "admin")
    products: list[dict[str, Any] | None] = [
        None,
        {"q": "mug"},
        {"q": "MUG red", "sort": "-price", "pageSize": 1, "page": 1},
        {"q": "mug", "pageSize": 1, "page": 9},
        {"category": "kitchen", "sort": "newest"},
        {"includeInactive": "true"},
        {"includeInactive": "yes"},
        {"includeInactive": "maybe"},
        {"pageSize": 0},
        {"pageSize": "x"},
        {"page": "01"},
        {"sort": "random"},
        {"q": LONG},
        {"q": ["a", "mug"]},
        {"unknown": "1"},
    ]
    for params in products:
        for caller in ("nobody", "ada", "admin"):
            await ask("/api/v1/products", params, caller)
    for product in (ids["product"], "nope", LONG, "%20"):
        await ask(f"/api/v1/products/{product}", None, "nobody")
    orders: list[dict[str, Any] | None] = [
        None,
        {"status": "RESERVED"},
        {"status": "bogus"},
        {"userId": ids["user"]},
        {"pageSize": 101},
    ]
    for params in orders:
        for caller in everyone:
            await ask("/api/v1/orders", params, caller)
    waits: list[dict[str, Any] | None] = [
        {"until": "RESERVED"},
        {"until": "COMPLETED", "timeout": 0},
        {"until": "bogus"},
        {"timeout": -1},
        {"timeout": 61},
        {"timeout": "soon"},
    ]
    for params in waits:
        for caller in everyone:
            await ask(f"/api/v1/orders/{ids['order']}/wait", params, caller)
    await ask("/api/v1/orders/nope/wait", {"timeout": 0}, "ada")
    for params in ({"orderId": ids["order"]}, {"orderId": ""}, {"orderId": LONG}, None):
        for caller in everyone:
            await ask("/api/v1/shipments", params, caller)
    for path in (
        "/api/v1/cart",
        "/api/v1/users/me",
        f"/api/v1/users/{ids['user']}",
        f"/api/v1/orders/{ids['order']}",
        "/api/v1/orders/nope",
        f"/api/v1/shipments/{ids['shipment']}",
        "/api/v1/shipments/nope",
        f"/oms/orders/{ids['order']}",
        "/oms/orders/%20",
    ):
        for caller in everyone:
            await ask(path, None, caller)
    for params in (None, {"id": ids["order"]}, {"id": ""}, {"id": LONG}):
        for path in ("/api/v1/orders/list", "/api/v1/orders/status"):
            await ask(path, params, "ada")
        await ask("/api/v1/orders/status_change_list", params, "ada")
    events: list[dict[str, Any] | None] = [
        None,
        {"type": "OrderCreated", "limit": 2},
        {"correlationId": ids["order"], "since": "2020-01-01T00:00:00Z"},
        {"until": "yesterday"},
        {"cursor": "nope"},
        {"limit": 0},
    ]
    for params in events:
        for caller in ("nobody", "ada", "admin"):
            await ask("/api/v1/admin/events", params, caller)
    for order in (ids["order"], "nope", LONG):
        for caller in ("ada", "admin"):
            await ask(f"/api/v1/admin/orders/{order}/story", None, caller)
    for params in ({"orderId": ids["order"]}, {"orderId": ""}, {"orderId": LONG}, None):
        for caller in everyone:
            await ask("/api/v1/payments", params, caller)
    for path in (f"/api/v1/payments/{ids['payment']}", "/api/v1/payments/nope"):
        for caller in everyone:
            await ask(path, None, caller)
    for params in (None, {"entries": 0}, {"entries": 501}, {"entries": "x"}):
        for caller in everyone:
            await ask("/api/v1/wallet", params, caller)
    recommendations: list[dict[str, Any] | None] = [
        None,
        {"productId": ids["product"]},
        {"productId": ids["product"], "limit": 51},
        {"userId": ids["user"]},
        {"userId": ids["user"], "limit": 2},
        {"productId": LONG},
    ]
    for params in recommendations:
        for caller in everyone:
            await ask("/api/v1/recommendations", params, caller)
    for params in ({"recommendations": 3}, {"recommendations": 21}, {"recommendations": "x"}):
        await ask(f"/api/v1/products/{ids['product']}", params, "nobody")
    hooks = "/api/v1/admin/webhooks"
    for params in (None, {"page": 2}, {"pageSize": 0}, {"status": "dead"}, {"status": "bogus"}):
        for path in (hooks, f"{hooks}/{ids['hook']}/deliveries", f"{hooks}/nope/deliveries"):
            for caller in everyone:
                await ask(path, params, caller)
    for path in (f"{hooks}/{ids['hook']}", f"{hooks}/nope", f"{hooks}/{LONG}"):
        for caller in everyone:
            await ask(path, None, caller)
    await ask("/.well-known/jwks.json", None, "nobody")
    for path in ("/orders/find/0", "/payment/find_user/0", "/stock/find/0", "/stock/find/x"):
        await ask(path, None, "nobody")
    for params in (None, {"movements": 5}, {"movements": 0}, {"movements": "x"}):
        for caller in everyone:
            await ask(f"/api/v1/inventory/{ids['product']}", params, caller)
    await ask("/api/v1/inventory/nope", None, "admin")
    letters: list[dict[str, Any] | None] = [
        None,
        {"service": "inventory", "type": "OrderCreated", "status": "open"},
        {"service": "nowhere"},
        {"status": "dead"},
        {"limit": 0},
        {"cursor": "not-one"},
    ]
    for params in letters:
        for caller in everyone:
            await ask("/api/v1/admin/dead-letters", params, caller)
    for path in ("/api/v1/admin/dead-letters/inventory.nope", "/api/v1/admin/dead-letters/x"):
        for caller in everyone:
            await ask(path, None, caller)
    for caller in ("nobody", "forged", "basic", "ada"):
        await ask("/api/v1/admin/system", None, caller)
    # The admin's: ages change between two asks; the same services, ready, in the same order.
    views = [
        await client.get("/api/v1/admin/system", headers=rig.callers["admin"])
        for client in (rig.lean_http, rig.plain_http)
    ]
    assert [v.status_code for v in views] == [200, 200]
    assert [(s["name"], s["ready"]) for s in views[0].json()["services"]] == [
        (s["name"], s["ready"]) for s in views[1].json()["services"]
    ]
    # Not its to serve: what FastAPI routes elsewhere, or answers 404/405 for.
    for path in ("/api/v1/products/", "/api/v1/orders/x/stream", "/openapi.json", "/nowhere"):
        await ask(path, None, "ada")
    for path in ("/api/v1/products", "/api/v1/orders/list"):
        assert path in rig.served


async def test_every_get_route_it_serves_is_asked_above(rig: Rig) -> None:
    # A new plain GET route is served lean at once: it needs a line in the test above.
    asked = {
        "/.well-known/jwks.json",
        "/api/v1/users/me",
        "/api/v1/users/{userId}",
        "/api/v1/products",
        "/api/v1/products/{productId}",
        "/api/v1/cart",
        "/api/v1/orders/list",
        "/api/v1/orders/status",
        "/api/v1/orders/status_change_list",
        "/oms/orders/{orderId}",
        "/api/v1/orders",
        "/api/v1/orders/{orderId}",
        "/api/v1/orders/{orderId}/wait",
        "/api/v1/shipments",
        "/api/v1/shipments/{shipmentId}",
        "/api/v1/payments",
        "/api/v1/payments/{paymentId}",
        "/api/v1/wallet",
        "/api/v1/recommendations",
        "/api/v1/admin/webhooks",
        "/api/v1/admin/webhooks/{subscriptionId}",
        "/api/v1/admin/webhooks/{subscriptionId}/deliveries",
        "/orders/find/{order_id}",
        "/payment/find_user/{user_id}",
        "/stock/find/{item_id}",
        "/api/v1/inventory/{productId}",
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/dead-letters/{id}",
        "/api/v1/admin/system",
        "/api/v1/admin/events",
        "/api/v1/admin/orders/{orderId}/story",
    }
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes if lean.plan_for(r, LEAN_WRITES) is not None} == asked | {
        "/api/v1/cart/items",
        "/api/v1/cart/checkout",
    }
    assert lean.plan_for(next(r for r in routes if r.path.endswith("/stream"))) is None


VOLATILE = {"updatedAt", "orderId"}


def steady(answer: httpx.Response) -> tuple[Any, ...]:
    """An answer without what differs from one write to the next (times, new ids)."""
    headers = [(k, v) for k, v in answer.headers.multi_items() if k != "location"]
    if answer.headers.get("content-type") == "application/json":
        body = answer.json()
        if isinstance(body, dict):
            body = {k: ("…" if k in VOLATILE else v) for k, v in body.items()}
        headers = [(k, v) for k, v in headers if k != "content-length"]
        return answer.status_code, headers, body, "location" in answer.headers
    return answer.status_code, headers, answer.content, "location" in answer.headers


async def test_lean_writes_answer_as_fastapi_does(rig: Rig) -> None:
    product, ada = rig.ids["product"], rig.callers["ada"]

    async def scene(items: int) -> None:
        """Ada's cart holds ``items`` of the product, and nothing else."""
        cart = (await rig.http.get("/api/v1/cart", headers=ada)).json()
        for line in cart["items"]:
            await rig.http.delete(f"/api/v1/cart/items/{line['productId']}", headers=ada)
        if items:
            line = {"productId": product, "quantity": items}
            assert (await rig.http.post("/api/v1/cart/items", json=line, headers=ada)).is_success

    async def ask(path: str, content: bytes, headers: dict[str, str], items: int) -> None:
        answers = []
        for n, client in enumerate((rig.lean_http, rig.plain_http)):
            await scene(items)
            sent = {"X-Request-ID": REQUEST_ID, **headers}
            if "Idempotency-Key" in sent:
                sent["Idempotency-Key"] += f"-{n}"
            answers.append(await client.post(path, content=content, headers=sent))
        assert steady(answers[0]) == steady(answers[1]), (path, content, headers)

    json_type = {"Content-Type": "application/json"}
    item = f'{{"productId": "{product}", "quantity": 2}}'.encode()
    adds: list[tuple[bytes, dict[str, str]]] = [
        (item, {**ada, **json_type}),
        (item, {**ada, **json_type, "Idempotency-Key": "add"}),
        (item, {**ada, **json_type, "Idempotency-Key": "not a key"}),
        (item, {**ada, "Content-Type": "application/json; charset=utf-8"}),
        (item, {**ada, "Content-Type": "application/merge-patch+json"}),
        (item, {**ada, "Content-Type": "text/plain"}),
        (item, ada),
        (item, json_type),
        (item, {**rig.callers["forged"], **json_type}),
        (b"", {**ada, **json_type}),
        (b"{", {**ada, **json_type}),
        (b"[]", {**ada, **json_type}),
        (b"\xff", {**ada, **json_type}),
        (b'{"productId": "nope"}', {**ada, **json_type}),
        (b'{"productId": ""}', {**ada, **json_type}),
        (f'{{"productId": "{product}", "quantity": 0}}'.encode(), {**ada, **json_type}),
        (f'{{"productId": "{product}", "quantity": NaN}}'.encode(), {**ada, **json_type}),
        (f'{{"productId": "{product}", "extra": 1}}'.encode(), {**ada, **json_type}),
    ]
    for content, headers in adds:
        await ask("/api/v1/cart/items", content, headers, items=1)
    card = json.dumps({"payment": PAYMENT, "shippingAddress": ADDRESS}).encode()
    wallet = json.dumps({"payment": {"method": "wallet"}, "shippingAddress": ADDRESS}).encode()
    bad_card = json.dumps(
        {"payment": {**PAYMENT, "cardNumber": "4242424242424241"}, "shippingAddress": ADDRESS}
    ).encode()
    checkouts: list[tuple[bytes, dict[str, str], int]] = [
        (card, {**ada, **json_type}, 1),
        (card, {**ada, **json_type, "Idempotency-Key": "co"}, 1),
        (card, {**ada, **json_type}, 0),
        (wallet, {**ada, **json_type}, 1),
        (bad_card, {**ada, **json_type}, 1),
        (b'{"payment": {"method": "cash"}}', {**ada, **json_type}, 1),
        (card, json_type, 1),
        (card, {**ada, "Content-Type": "text/plain"}, 1),
    ]
    for content, headers, items in checkouts:
        await ask("/api/v1/cart/checkout", content, headers, items)
    assert {"/api/v1/cart/items", "/api/v1/cart/checkout"} <= set(rig.served)
