"""The storefront end to end through the gateway, embedded (one process, in-process bus,
SQLite): register → sign in → browse and search → fill a cart → the admin reprices and deletes
→ the cart follows → check out → CartCheckedOut carries the right items and prices.

``journey`` is the same walk for every way of running the system; the processes variant on
RabbitMQ + PostgreSQL reuses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mercato.platform.envelope import Envelope
from mercato.platform.settings import Settings
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.tables import outbox
from mercato.services import load_service
from tests.conftest import eventually
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
ADA = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
BO = {"email": "bo@example.com", "password": "battery staple 7", "name": "Bo"}
CY = {"email": "cy@example.com", "password": "tulip quartz 5", "name": "Cy"}
CARD = "4242 4242 4242 4242"
PAYMENT = {"method": "card", "cardNumber": CARD, "expiry": "12/39", "cvc": "123", "holder": "Ada"}
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postalCode": "N1 7AA",
    "country": "GB",
}
PROBLEM = "application/problem+json"
STOREFRONT = ("identity", "catalog", "cart", "payment", "gateway")

Events = Callable[[str], Awaitable[list[Envelope]]]


def outbox_reader(settings: Settings, service: str) -> Events:
    """The events ``service`` has published, read from its outbox (any database)."""
    engine = open_database(service_url(settings.database_url, service, settings.data_dir))

    async def events(event_type: str) -> list[Envelope]:
        async with engine.connect() as conn:
            query = select(outbox.c.envelope).where(outbox.c.event_type == event_type)
            found = (await conn.execute(query.order_by(outbox.c.seq))).all()
        return [Envelope.from_json(r.envelope) for r in found]

    events.db = engine  # type: ignore[attr-defined]
    return events


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return dict(response.json())


async def sign_up_and_in(http: httpx.AsyncClient, who: dict[str, str]) -> dict[str, str]:
    if "name" in who:
        assert (await http.post("/api/v1/auth/register", json=who)).status_code == 201
    body = {"email": who["email"], "password": who["password"]}
    response = await http.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


async def journey(http: httpx.AsyncClient, cart_events: Events, timeout: float = 10) -> None:
    ada = await sign_up_and_in(http, ADA)
    admin = await sign_up_and_in(http, ADMIN)

    # The admin stocks the shop; a customer may not.
    made = {}
    for name, category, price in [
        ("Espresso cup", "kitchen", 12.5),
        ("French press", "kitchen", 30),
        ("Green tea", "tea", 4.25),
    ]:
        body = {"name": name, "category": category, "price": price, "quantity": 10}
        response = await http.post("/api/v1/products", json=body, headers=admin)
        assert response.status_code == 201, response.text
        made[name] = response.json()["productId"]
    problem(await http.post("/api/v1/products", json=body, headers=ada), 403)
    cup, press, tea = made["Espresso cup"], made["French press"], made["Green tea"]

    # Browse and search, as anyone.
    found = (await http.get("/api/v1/products", params={"q": "CUP"})).json()
    assert [p["productId"] for p in found["items"]] == [cup]
    kitchen = await http.get("/api/v1/products", params={"category": "kitchen", "sort": "-price"})
    assert [p["name"] for p in kitchen.json()["items"]] == ["French press", "Espresso cup"]
    paged = (await http.get("/api/v1/products", params={"pageSize": 2, "page": 2})).json()
    assert paged["total"] == 3 and len(paged["items"]) == 1
    shown = await http.get(f"/api/v1/products/{cup}", headers=ada)
    assert shown.status_code == 200 and shown.json()["price"] == 12.5

    # Fill the cart; bad items are refused with the right status and leave it as it was.
    problem(await http.get("/api/v1/cart"), 401)
    for product, quantity in [(cup, 2), (tea, 1), (press, 1)]:
        body = {"productId": product, "quantity": quantity}
        response = await http.post("/api/v1/cart/items", json=body, headers=ada)
        assert response.status_code == 200, response.text
    problem(await http.post("/api/v1/cart/items", json={"productId": "nope"}, headers=ada), 404)
    for quantity in (0, -1, 1_000_000):
        body = {"productId": cup, "quantity": quantity}
        problem(await http.post("/api/v1/cart/items", json=body, headers=ada), 422)
    response = await http.patch(f"/api/v1/cart/items/{press}", json={"quantity": 3}, headers=ada)
    assert response.json()["itemCount"] == 6
    response = await http.delete(f"/api/v1/cart/items/{press}", headers=ada)
    cart = response.json()
    assert [(x["productId"], x["quantity"], x["price"]) for x in cart["items"]] == [
        (cup, 2, 12.5),
        (tea, 1, 4.25),
    ]
    assert cart["total"] == 29.25 and cart["currency"] == "USD"

    # The admin reprices the cup: the cart follows (through ProductUpdated).
    response = await http.patch(f"/api/v1/products/{cup}", json={"price": 14}, headers=admin)
    assert response.status_code == 200, response.text

    async def repriced() -> bool:
        cart = (await http.get("/api/v1/cart", headers=ada)).json()
        return bool(cart["items"][0]["price"] == 14 and cart["total"] == 32.25)

    await eventually(repriced, timeout=timeout)

    # The admin deletes the tea: it leaves the cart (through ProductDeleted).
    assert (await http.delete(f"/api/v1/products/{tea}", headers=admin)).status_code == 204

    async def tea_gone() -> bool:
        cart = (await http.get("/api/v1/cart", headers=ada)).json()
        return [x["productId"] for x in cart["items"]] == [cup]

    await eventually(tea_gone, timeout=timeout)
    problem(await http.post("/api/v1/cart/items", json={"productId": tea}, headers=ada), 422)

    # Checkout: a bad card is refused at the door and never echoed; a retry makes one order.
    bad = {"payment": {**PAYMENT, "cardNumber": "4242 4242 4242 4241"}, "shippingAddress": ADDRESS}
    refused = problem(await http.post("/api/v1/cart/checkout", json=bad, headers=ada), 422)
    assert "4241" not in json.dumps(refused)
    order = {"payment": PAYMENT, "shippingAddress": ADDRESS}
    once = {**ada, "Idempotency-Key": "ada-checkout-1"}
    first = await http.post("/api/v1/cart/checkout", json=order, headers=once)
    assert first.status_code == 202, first.text
    order_id = first.json()["orderId"]
    again = await http.post("/api/v1/cart/checkout", json=order, headers=once)
    assert again.status_code == 202 and again.json() == {"orderId": order_id}
    # The same key with another card that ends in the same four digits is another request.
    other = {**PAYMENT, "cardNumber": "5555 5555 5559 4242", "expiry": "11/38", "cvc": "999"}
    changed = {"payment": {**other, "holder": "Mallory"}, "shippingAddress": ADDRESS}
    problem(await http.post("/api/v1/cart/checkout", json=changed, headers=once), 422)
    emptied = (await http.get("/api/v1/cart", headers=ada)).json()
    assert emptied["items"] == [] and emptied["total"] == 0
    problem(await http.post("/api/v1/cart/checkout", json=order, headers=ada), 422)

    [event] = await cart_events("CartCheckedOut")
    data = event.data
    assert data["orderId"] == order_id and event.correlationid == order_id
    assert data["items"] == [{"productId": cup, "quantity": 2, "price": 14.0}]
    assert data["currency"] == "USD" and data["shippingAddress"]["city"] == "London"
    assert data["payment"]["method"] == "card" and data["payment"]["last4"] == "4242"
    assert data["payment"]["token"].startswith("tok_")
    assert "4242424242424242" not in event.to_json() and CARD not in event.to_json()


async def separate_carts(http: httpx.AsyncClient) -> None:
    """User A cannot read or change user B's cart: no route names another's cart, and the
    cart routes act on the caller's own."""
    user_a, user_b = await sign_up_and_in(http, BO), await sign_up_and_in(http, CY)
    admin = await sign_up_and_in(http, ADMIN)
    body = {"name": "Teapot", "price": 20, "quantity": 5}
    teapot = (await http.post("/api/v1/products", json=body, headers=admin)).json()["productId"]
    await http.post("/api/v1/cart/items", json={"productId": teapot, "quantity": 2}, headers=user_a)
    cart_b = (await http.get("/api/v1/cart", headers=user_b)).json()
    assert cart_b["items"] == [] and cart_b["cartId"] is None
    problem(
        await http.patch(f"/api/v1/cart/items/{teapot}", json={"quantity": 9}, headers=user_b), 404
    )
    problem(await http.delete(f"/api/v1/cart/items/{teapot}", headers=user_b), 404)
    order = {"payment": {"method": "wallet"}, "shippingAddress": ADDRESS}
    problem(await http.post("/api/v1/cart/checkout", json=order, headers=user_b), 422)
    cart_a = (await http.get("/api/v1/cart", headers=user_a)).json()
    assert [(x["productId"], x["quantity"]) for x in cart_a["items"]] == [(teapot, 2)]
    assert cart_a["userId"] != cart_b["userId"]
    forged = {"Authorization": "Bearer " + user_a["Authorization"][7:-4] + "AAAA"}
    problem(await http.get("/api/v1/cart", headers=forged), 401)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = make_settings(tmp_path, admin_email=ADMIN["email"], admin_password=ADMIN["password"])
    async with running([load_service(n) for n in STOREFRONT], settings) as (_, http):
        yield http, settings


async def test_the_storefront_journey_embedded(
    shop: tuple[httpx.AsyncClient, Settings], capfd: pytest.CaptureFixture[str]
) -> None:
    http, settings = shop
    events = outbox_reader(settings, "cart")
    try:
        await journey(http, events)
    finally:
        await events.db.dispose()  # type: ignore[attr-defined]
    out, err = capfd.readouterr()
    assert "4242424242424242" not in out + err and CARD not in out + err


async def test_a_customer_reaches_only_their_own_cart(
    shop: tuple[httpx.AsyncClient, Settings],
) -> None:
    await separate_carts(shop[0])


async def test_a_path_no_route_takes_is_a_problem_too(
    shop: tuple[httpx.AsyncClient, Settings],
) -> None:
    # Found by schemathesis: a newline in the path slipped past every mounted app.
    body = problem(await shop[0].get("/api/v1/products/a%0Ab"), 404)
    assert body["status"] == 404


BAD_CARDS = [
    {"cardNumber": "4242 4242 4242 4241"},  # fails Luhn
    {"cardNumber": "4242"},  # too short
    {"expiry": "01/20"},  # expired
    {"expiry": "13/30"},
    {"cvc": "12"},
    {"holder": ""},
    {"method": "cash"},
    {"pin": "1234"},  # no field beyond the documented ones
]


async def test_a_bad_card_is_refused_at_the_door_and_never_echoed(
    shop: tuple[httpx.AsyncClient, Settings],
) -> None:
    http = shop[0]
    ada = await sign_up_and_in(http, ADA)
    for change in BAD_CARDS:
        order = {"payment": {**PAYMENT, **change}, "shippingAddress": ADDRESS}
        body = problem(await http.post("/api/v1/cart/checkout", json=order, headers=ada), 422)
        text = json.dumps(body)
        assert "4242" not in text and "4241" not in text and body["errors"], change
