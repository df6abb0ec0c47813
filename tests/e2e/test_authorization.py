"""The authorization matrix, generated from the OpenAPI document: every operation, asked by
nobody, by customer A, by customer B and by the admin, about A's things (A's order, A's
shipment, A's account). What each route allows is declared once below (``RULES``); an
operation in the document without a rule, or a rule without an operation, fails the test, so
a new route cannot go in without saying who may call it.

- ``PUBLIC``: no credentials needed, and who asks changes nothing (the same status for all).
- ``SIGNED_IN``: any signed-in user, acting on their own things: nobody gets 401.
- ``ADMIN``: nobody gets 401, the customers 403.
- ``OWNER``: about A's things: nobody gets 401, B is refused (403, or 404: B cannot tell that
  A's thing exists), A and the admin are let through: not 401, 403 or 404, whatever the route
  then says (a 422 for a state it cannot act in is past the gate).
- ``OWN``: about A's things, only A passes: B and the admin get 404 (marking A's
  notification read is A's alone).
- ``OWNER_LISTED``: a list filtered by the caller: about A's things, A and the admin see
  them, B gets what any id that is not B's gives (an empty list: nothing shown, and nothing
  told, not even whether A's thing exists).

No answer is a 5xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import eventually
from tests.e2e.test_operations import dead_letter
from tests.e2e.test_saga import ADDRESS, Shop, card, open_shop

# The system runs in the module's loop: so do the tests (the admin routes call every
# service over the network, on channels and servers of that loop).
pytestmark = pytest.mark.asyncio(loop_scope="module")

Callers = dict[str, dict[str, str]]


class Rule(Enum):
    PUBLIC = "public"
    SIGNED_IN = "signed in"
    ADMIN = "admin"
    OWNER = "owner"
    OWNER_LISTED = "owner, listed"
    OWN = "own"


@dataclass(frozen=True)
class Ask:
    """Who may call an operation, and what to send it (beside the path's ids)."""

    rule: Rule
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    path: dict[str, str] = field(default_factory=dict)  # ids other than A's things


NEW_ITEM = {"productId": "{productId}", "quantity": 1}
SEED_ORDER = {"products": {"option": [{"id": "{productId}"}]}}
# A webhook endpoint on loopback's discard port: its deliveries fail there, never leave.
HOOK = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["*"]}

RULES: dict[str, Ask] = {
    "POST /api/v1/auth/register": Ask(Rule.PUBLIC, body={}),
    "POST /api/v1/auth/login": Ask(
        Rule.PUBLIC, body={"email": "nobody@example.com", "password": "not it 12"}
    ),
    "POST /api/v1/auth/refresh": Ask(Rule.PUBLIC, body={"refreshToken": "not-a-token"}),
    "POST /api/v1/auth/logout": Ask(Rule.PUBLIC, body={"refreshToken": "not-a-token"}),
    "GET /.well-known/jwks.json": Ask(Rule.PUBLIC),
    "GET /api/v1/users/me": Ask(Rule.SIGNED_IN),
    "PATCH /api/v1/users/me": Ask(Rule.SIGNED_IN, body={"name": "Still me"}),
    "GET /api/v1/users/{userId}": Ask(Rule.ADMIN),
    "PUT /api/v1/users/{userId}/roles": Ask(Rule.ADMIN, body={"roles": ["customer"]}),
    "GET /api/v1/products": Ask(Rule.PUBLIC),
    "POST /api/v1/products": Ask(Rule.ADMIN, body={"name": "Mug", "price": 3}),
    "GET /api/v1/products/{productId}": Ask(Rule.PUBLIC),
    "PATCH /api/v1/products/{productId}": Ask(Rule.ADMIN, body={"name": "Red mug"}),
    "DELETE /api/v1/products/{productId}": Ask(Rule.ADMIN, path={"productId": "{doomed}"}),
    "GET /api/v1/cart": Ask(Rule.SIGNED_IN),
    "POST /api/v1/cart/items": Ask(Rule.SIGNED_IN, body=NEW_ITEM),
    "PATCH /api/v1/cart/items/{productId}": Ask(Rule.SIGNED_IN, body={"quantity": 2}),
    "DELETE /api/v1/cart/items/{productId}": Ask(Rule.SIGNED_IN),
    "POST /api/v1/cart/checkout": Ask(
        Rule.SIGNED_IN, body={"payment": {"method": "wallet"}, "shippingAddress": ADDRESS}
    ),
    "POST /api/v1/orders/create": Ask(
        Rule.OWNER, query={"currentUserId": "{userId}"}, body=SEED_ORDER
    ),
    "POST /api/v1/orders/cancel": Ask(Rule.OWNER, query={"orderID": "{orderId}"}),
    "GET /api/v1/orders/list": Ask(Rule.OWNER, query={"currentUserId": "{userId}"}),
    "GET /api/v1/orders/status": Ask(Rule.OWNER, query={"id": "{orderId}"}),
    "GET /api/v1/orders/status_change_list": Ask(Rule.OWNER, query={"id": "{orderId}"}),
    "POST /oms/orders": Ask(Rule.OWNER, body={"userId": "{userId}", "orderItems": [NEW_ITEM]}),
    "GET /oms/orders/{orderId}": Ask(Rule.OWNER),
    "PUT /oms/orders/{orderId}": Ask(Rule.OWNER, body={"status": "CANCELED"}),
    "POST /api/v1/orders": Ask(
        Rule.SIGNED_IN,
        body={"items": [NEW_ITEM], "payment": {"method": "wallet"}, "shippingAddress": ADDRESS},
    ),
    "GET /api/v1/orders": Ask(Rule.SIGNED_IN),
    "GET /api/v1/orders/{orderId}": Ask(Rule.OWNER),
    "POST /api/v1/orders/{orderId}/cancel": Ask(Rule.OWNER, body={}),
    "GET /api/v1/orders/{orderId}/wait": Ask(Rule.OWNER, query={"timeout": "0"}),
    "GET /api/v1/orders/{orderId}/stream": Ask(Rule.OWNER),
    "GET /api/v1/shipments": Ask(Rule.OWNER_LISTED, query={"orderId": "{orderId}"}),
    "GET /api/v1/shipments/{shipmentId}": Ask(Rule.OWNER),
    "POST /api/v1/shipments/{shipmentId}/delivered": Ask(Rule.ADMIN),
    "POST /api/v1/shipments/{shipmentId}/failed": Ask(Rule.ADMIN, body={}),
    "GET /api/v1/inventory/{productId}": Ask(Rule.ADMIN),
    "POST /api/v1/inventory/{productId}/restock": Ask(Rule.ADMIN, body={"quantity": 1}),
    "GET /api/v1/admin/dead-letters": Ask(Rule.ADMIN),
    "GET /api/v1/admin/dead-letters/{id}": Ask(Rule.ADMIN, path={"id": "{letterId}"}),
    "POST /api/v1/admin/dead-letters/{id}/redrive": Ask(Rule.ADMIN, path={"id": "{letterId}"}),
    "POST /api/v1/admin/dead-letters/{id}/discard": Ask(
        Rule.ADMIN, path={"id": "{letterId}"}, body={"reason": "a test's"}
    ),
    "GET /api/v1/admin/system": Ask(Rule.ADMIN),
    "GET /api/v1/admin/events": Ask(Rule.ADMIN),
    "GET /api/v1/admin/orders/{orderId}/story": Ask(Rule.ADMIN),
    "GET /api/v1/payments": Ask(Rule.OWNER_LISTED, query={"orderId": "{orderId}"}),
    "GET /api/v1/payments/{paymentId}": Ask(Rule.OWNER),
    "GET /api/v1/wallet": Ask(Rule.SIGNED_IN),
    "POST /api/v1/admin/wallets/{userId}/credit": Ask(
        Rule.ADMIN, body={"amount": 1, "reason": "goodwill"}
    ),
    "GET /api/v1/recommendations": Ask(Rule.PUBLIC, query={"productId": "{productId}"}),
    "POST /api/v1/admin/webhooks": Ask(Rule.ADMIN, body={**HOOK, "active": False}),
    "GET /api/v1/admin/webhooks": Ask(Rule.ADMIN),
    "GET /api/v1/admin/webhooks/{subscriptionId}": Ask(Rule.ADMIN),
    "PATCH /api/v1/admin/webhooks/{subscriptionId}": Ask(Rule.ADMIN, body={"description": "x"}),
    "DELETE /api/v1/admin/webhooks/{subscriptionId}": Ask(
        Rule.ADMIN, path={"subscriptionId": "{doomedHook}"}
    ),
    "POST /api/v1/admin/webhooks/{subscriptionId}/rotate-secret": Ask(Rule.ADMIN, body={}),
    "GET /api/v1/admin/webhooks/{subscriptionId}/deliveries": Ask(Rule.ADMIN),
    "POST /api/v1/admin/webhooks/deliveries/{deliveryId}/redrive": Ask(Rule.ADMIN),
    "GET /api/v1/notifications": Ask(Rule.OWNER, query={"userId": "{userId}"}),
    "POST /api/v1/notifications/{notificationId}/read": Ask(Rule.OWN),
    # The WDM benchmark's API takes no credentials and acts as the admin (MERCATO_WDM_API=1,
    # never on an open port): the same for anyone.
    **{
        label: Ask(Rule.PUBLIC)
        for label in (
            "POST /orders/create/{user_id}",
            "POST /orders/addItem/{order_id}/{item_id}/{quantity}",
            "POST /orders/checkout/{order_id}",
            "GET /orders/find/{order_id}",
            "POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
            "POST /payment/create_user",
            "GET /payment/find_user/{user_id}",
            "POST /payment/add_funds/{user_id}/{amount}",
            "POST /payment/pay/{user_id}/{amount}",
            "POST /payment/batch_init/{n}/{starting_money}",
            "POST /stock/item/create/{price}",
            "GET /stock/find/{item_id}",
            "POST /stock/add/{item_id}/{amount}",
            "POST /stock/subtract/{item_id}/{amount}",
            "POST /stock/batch_init/{n}/{starting_stock}/{item_price}",
        )
    },
}
# The WDM API's path parameters: small numbers, which it maps to ids of its own.
WDM_NUMBERS = ("user_id", "order_id", "item_id", "quantity", "n", "n_items", "n_users")
WDM_NUMBERS += ("item_price", "amount", "starting_money", "price", "starting_stock")
CALLERS = ("nobody", "customer A", "customer B", "admin")


@dataclass
class World:
    shop: Shop
    callers: Callers
    ids: dict[str, str]
    labels: list[str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for shop in open_shop(
        tmp_path_factory.mktemp("authz"), wdm_api=True, webhook_allow_private_targets=True
    ):
        hooks = [
            (await shop.http.post("/api/v1/admin/webhooks", json=HOOK, headers=shop.admin)).json()
            for _ in range(2)
        ]
        a, b = await shop.customer(), await shop.customer()
        callers = {"nobody": {}, "customer A": a, "customer B": b, "admin": shop.admin}
        product = await shop.product(quantity=100)
        doomed = await shop.product()
        order_id = (await shop.place(a, [(product, 1)], payment=card()))["orderId"]
        shipment = await shop.shipment(a, order_id, "delivery")
        # Final, so that its event stream ends at once.
        cancelled = await shop.http.post(f"/api/v1/orders/{order_id}/cancel", json={}, headers=a)
        assert cancelled.status_code == 200, cancelled.text
        me = (await shop.http.get("/api/v1/users/me", headers=a)).json()
        assert shop.system is not None
        letter = await dead_letter(shop.system, shop.admin, shop.http)
        paid = await shop.http.get("/api/v1/payments", params={"orderId": order_id}, headers=a)
        deliveries = await shop.http.get(
            f"/api/v1/admin/webhooks/{hooks[0]['id']}/deliveries", headers=shop.admin
        )
        notification_id = await eventually(partial(first_notification, shop, a))
        ids = {
            "paymentId": paid.json()["items"][0]["paymentId"],
            "productId": product,
            "doomed": doomed,
            "orderId": order_id,
            "shipmentId": shipment["shipmentId"],
            "userId": me["userId"],
            "letterId": letter,
            "subscriptionId": hooks[0]["id"],
            "doomedHook": hooks[1]["id"],
            "deliveryId": deliveries.json()["items"][0]["id"],
            "notificationId": notification_id,
            **{name: "1" for name in WDM_NUMBERS},
        }
        document = (await shop.http.get("/openapi.json")).json()
        labels = [
            f"{method.upper()} {path}"
            for path, item in document["paths"].items()
            for method in item
        ]
        yield World(shop, callers, ids, labels)


async def first_notification(shop: Shop, who: dict[str, str]) -> str | None:
    page = (await shop.http.get("/api/v1/notifications", headers=who)).json()
    return str(page["items"][-1]["id"]) if page["items"] else None


def filled(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every ``{name}`` replaced by that id."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: filled(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, ids) for v in value]
    return value


async def test_every_operation_has_exactly_one_declared_rule(world: World) -> None:
    assert sorted(set(world.labels) - set(RULES)) == [], "operations without a rule"
    assert sorted(set(RULES) - set(world.labels)) == [], "rules without an operation"


@pytest.mark.parametrize("label", sorted(RULES))
async def test_who_may_call_what(world: World, label: str) -> None:
    ask = RULES[label]
    method, path = label.split(" ", 1)
    ids = {**world.ids, **filled(ask.path, world.ids)}
    statuses: dict[str, int] = {}
    items: dict[str, list[Any]] = {}
    for caller in CALLERS:
        response = await world.shop.http.request(
            method,
            filled(path, ids),
            params=filled(ask.query, ids),
            json=filled(ask.body, ids) if ask.body is not None or method != "GET" else None,
            headers=world.callers[caller],
        )
        assert response.status_code < 500, (caller, response.text)
        statuses[caller] = response.status_code
        if ask.rule is Rule.OWNER_LISTED and response.status_code == 200:
            items[caller] = response.json()["items"]
    passed = {caller: status not in (401, 403, 404) for caller, status in statuses.items()}
    if ask.rule is Rule.PUBLIC:
        assert len(set(statuses.values())) == 1, statuses
    else:
        assert statuses["nobody"] == 401, statuses
    if ask.rule is Rule.SIGNED_IN:  # their own things: a 404 is theirs not being there
        assert all(statuses[c] not in (401, 403) for c in CALLERS[1:]), statuses
    if ask.rule is Rule.OWNER_LISTED:
        assert items["customer B"] == [], (statuses, items)
        assert items["customer A"] and items["admin"] == items["customer A"], items
    if ask.rule is Rule.ADMIN:
        assert statuses["customer A"] == statuses["customer B"] == 403, statuses
        assert passed["admin"], statuses
    if ask.rule is Rule.OWNER:
        assert statuses["customer B"] in (403, 404), statuses
        assert passed["customer A"] and passed["admin"], statuses
    if ask.rule is Rule.OWN:
        assert statuses["customer B"] == statuses["admin"] == 404, statuses
        assert passed["customer A"], statuses
