"""Recommendations through the public API, embedded: after views (in one browsing session,
by one signed-in user) and completed orders, the lists are as expected; a deleted or
inactive product disappears from them; a user's own list is theirs alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mercato.services import ordered_names
from tests.conftest import eventually
from tests.e2e.test_saga import Shop, open_shop

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    async for opened in open_shop(tmp_path_factory.mktemp("reco")):
        yield opened


async def product(shop: Shop, name: str, category: str) -> str:
    body = {"name": name, "price": 5, "quantity": 20, "category": category}
    made = await shop.http.post("/api/v1/products", json=body, headers=shop.admin)
    assert made.status_code == 201, made.text
    product_id = str(made.json()["productId"])
    await shop.stock_is(product_id, 20)
    return product_id


async def look(shop: Shop, product_id: str, headers: dict[str, str]) -> None:
    shown = await shop.http.get(f"/api/v1/products/{product_id}", headers=headers)
    assert shown.status_code == 200, shown.text


async def recommended(shop: Shop, headers: dict[str, str] | None = None, **query: Any) -> Any:
    response = await shop.http.get("/api/v1/recommendations", params=query, headers=headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    return [(i["productId"], i["reason"]) for i in items]


async def until(shop: Shop, first: list[tuple[str, str]], popular: set[str], **query: Any) -> None:
    """Until the list is ``first``, then the ``popular`` products of the category (in the
    order of their popularity, which the test's own reads of the products move)."""

    async def check() -> bool:
        found = await recommended(shop, **query)
        rest = found[len(first) :]
        return bool(
            found[: len(first)] == first
            and {p for p, _ in rest} == popular
            and {r for _, r in rest} <= {"popularInCategory"}
        )

    await eventually(check, timeout=10)


async def test_views_and_orders_make_the_lists_and_a_deleted_product_leaves_them(
    shop: Shop,
) -> None:
    kettle, teapot, cosy, mug = [
        await product(shop, name, "tea") for name in ("Kettle", "Teapot", "Tea cosy", "Mug")
    ]
    # Cold start: the category's products, none of them the kettle itself.
    await until(shop, [], {mug, cosy, teapot}, productId=kettle)
    session = {"X-Session-ID": "tab-1"}
    await look(shop, kettle, session)
    await look(shop, teapot, session)
    await until(shop, [(teapot, "alsoViewed")], {mug, cosy}, productId=kettle, limit=3)
    # A completed order of the kettle and the cosy: bought together comes first.
    ada = await shop.customer()
    order_id = (await shop.place(ada, [(kettle, 1), (cosy, 1)]))["orderId"]
    shipment = await shop.shipment(ada, order_id, "delivery")
    await shop.carrier(shipment["shipmentId"], "delivered")
    await shop.wait(ada, order_id, "COMPLETED")
    await until(shop, [(cosy, "boughtTogether"), (teapot, "alsoViewed")], {mug}, productId=kettle)
    # The cosy deleted, the teapot made inactive: neither is recommended any more.
    deleted = await shop.http.delete(f"/api/v1/products/{cosy}", headers=shop.admin)
    assert deleted.status_code == 204
    hidden = await shop.http.patch(
        f"/api/v1/products/{teapot}", json={"active": False}, headers=shop.admin
    )
    assert hidden.status_code == 200, hidden.text
    await until(shop, [], {mug}, productId=kettle)


async def test_a_users_list_follows_what_they_viewed_and_is_theirs_alone(shop: Shop) -> None:
    pen, ink = [await product(shop, name, "desk") for name in ("Pen", "Ink")]
    bo, cy = await shop.customer(), await shop.customer()
    await look(shop, pen, {**bo, "X-Session-ID": "bo-tab"})
    await look(shop, ink, {**cy, "X-Session-ID": "cy-tab"})
    await look(shop, pen, cy)  # cy viewed pen and ink: they go together
    bo_id = (await shop.http.get("/api/v1/users/me", headers=bo)).json()["userId"]

    async def check() -> bool:
        found = await recommended(shop, bo, userId=bo_id, limit=1)
        return bool(found == [(ink, "alsoViewed")])

    await eventually(check, timeout=10)
    assert (await recommended(shop, shop.admin, userId=bo_id, limit=1)) == [(ink, "alsoViewed")]
    for headers, status in (({}, 401), (cy, 403)):
        response = await shop.http.get(
            "/api/v1/recommendations", params={"userId": bo_id}, headers=headers
        )
        assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "query",
    [{}, {"productId": "p", "limit": 0}, {"productId": "p", "limit": 51}, {"productId": ""}],
)
async def test_a_bad_question_is_a_422(shop: Shop, query: dict[str, Any]) -> None:
    response = await shop.http.get("/api/v1/recommendations", params=query)
    assert response.status_code == 422, response.text


async def test_a_bad_session_header_is_a_422(shop: Shop) -> None:
    pen = await product(shop, "Quill", "desk")
    response = await shop.http.get(f"/api/v1/products/{pen}", headers={"X-Session-ID": "x" * 201})
    assert response.status_code == 422, response.text


async def test_the_product_page_includes_recommendations_when_asked(shop: Shop) -> None:
    lamp, shade = [await product(shop, name, "light") for name in ("Lamp", "Shade")]
    await look(shop, lamp, {"X-Session-ID": "tab-9"})
    await look(shop, shade, {"X-Session-ID": "tab-9"})

    async def page() -> Any:
        shown = await shop.http.get(f"/api/v1/products/{lamp}", params={"recommendations": 1})
        assert shown.status_code == 200, shown.text
        beside = shown.json()["recommendations"]
        return beside if beside and beside[0]["reason"] == "alsoViewed" else None

    [item] = await eventually(page, timeout=10)
    assert (item["productId"], item["name"], item["price"]) == (shade, "Shade", 5)
    plain = await shop.http.get(f"/api/v1/products/{lamp}")
    assert plain.json()["recommendations"] is None
    too_many = await shop.http.get(f"/api/v1/products/{lamp}", params={"recommendations": 21})
    assert too_many.status_code == 422


async def test_the_product_page_goes_without_them_when_the_service_is_left_out(
    tmp_path: Path,
) -> None:
    names = [n for n in ordered_names() if n != "recommendation"]
    async for other in open_shop(tmp_path, names):
        lamp = await product(other, "Lamp", "light")
        shown = await other.http.get(f"/api/v1/products/{lamp}", params={"recommendations": 3})
        assert shown.status_code == 200, shown.text
        assert shown.json()["recommendations"] is None
        asked = await other.http.get("/api/v1/recommendations", params={"productId": lamp})
        assert asked.status_code == 503
