"""A product's stock over HTTP (admin): read with its movements, restocked with a reason and an
Idempotency-Key, while orders reserve it; bad input refused and nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import eventually
from tests.e2e.test_saga import Shop, open_shop


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    async for opened in open_shop(tmp_path_factory.mktemp("inventory-routes")):
        yield opened


async def stock(shop: Shop, product_id: str) -> dict[str, Any]:
    answer = await shop.http.get(f"/api/v1/inventory/{product_id}", headers=shop.admin)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def restock(
    shop: Shop, product_id: str, body: Any, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {**shop.admin, **({"Idempotency-Key": key} if key else {})}
    answer = await shop.http.post(
        f"/api/v1/inventory/{product_id}/restock", json=body, headers=headers
    )
    return answer.status_code, answer.json()


@pytest.mark.asyncio(loop_scope="module")
async def test_two_restocks_and_an_order_at_once_all_count(shop: Shop) -> None:
    cup = await shop.product(quantity=10)
    first = await stock(shop, cup)
    assert {k: first[k] for k in ("onHand", "reserved", "available", "low", "retired")} == {
        "onHand": 10,
        "reserved": 0,
        "available": 10,
        "low": False,
        "retired": False,
    }
    assert first["lowStockThreshold"] == shop.settings.stock_low_threshold
    assert [(m["kind"], m["quantity"]) for m in first["movements"]] == [("stocked", 10)]

    who = await shop.customer()
    (a, _), (b, _), placed = await asyncio.gather(
        restock(shop, cup, {"quantity": 5, "reason": "pallet 1"}),
        restock(shop, cup, {"quantity": 7, "reason": "pallet 2"}),
        shop.place(who, [(cup, 3)]),
    )
    assert (a, b) == (200, 200)
    await shop.wait(who, placed["orderId"], "RESERVED")
    now = await stock(shop, cup)
    assert (now["onHand"], now["reserved"], now["available"]) == (22, 3, 19)
    moved = {(m["kind"], m["quantity"], m["reason"], m["orderId"]) for m in now["movements"]}
    assert moved == {
        ("stocked", 10, None, None),
        ("restocked", 5, "pallet 1", None),
        ("restocked", 7, "pallet 2", None),
        ("reserved", 3, None, placed["orderId"]),
    }
    admin = (await shop.http.get("/api/v1/users/me", headers=shop.admin)).json()["userId"]
    assert {m["by"] for m in now["movements"] if m["kind"] == "restocked"} == {admin}
    await shop.stock_is(cup, 19)  # the catalog heard StockUpdated


@pytest.mark.asyncio(loop_scope="module")
async def test_a_restock_retried_with_its_key_restocks_once(shop: Shop) -> None:
    cup = await shop.product(quantity=2)
    body = {"quantity": 4, "reason": "late delivery"}
    replies = await asyncio.gather(*(restock(shop, cup, body, key="restock-7") for _ in range(3)))
    assert [code for code, _ in replies] == [200, 200, 200]
    assert {(r["onHand"], r["available"]) for _, r in replies} == {(6, 6)}
    assert (await stock(shop, cup))["available"] == 6
    code, problem = await restock(shop, cup, {"quantity": 5}, key="restock-7")
    assert code == 422 and "Idempotency-Key" in problem["detail"], problem  # another body
    assert (await stock(shop, cup))["available"] == 6


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_restocks_are_refused_and_change_nothing(shop: Shop) -> None:
    cup = await shop.product(quantity=2)
    for body in (
        {},
        {"quantity": 0},
        {"quantity": -3},
        {"quantity": 2.5},
        {"quantity": "2"},
        {"quantity": True},
        {"quantity": 1_000_000_001},
        {"quantity": 1, "reason": ""},
        {"quantity": 1, "reason": "x" * 501},
        {"quantity": 1, "reason": "bad\x1b[31m"},
        {"quantity": 1, "extra": 1},
    ):
        code, problem = await restock(shop, cup, body)
        assert code == 422, (body, problem)
    assert (await stock(shop, cup))["available"] == 2
    code, problem = await restock(shop, "no-such-product", {"quantity": 1})
    assert code == 404, problem
    unknown = await shop.http.get("/api/v1/inventory/no-such-product", headers=shop.admin)
    assert unknown.status_code == 404
    deleted = await shop.product(quantity=1)
    gone = await shop.http.delete(f"/api/v1/products/{deleted}", headers=shop.admin)
    assert gone.status_code == 204, gone.text

    async def retired() -> bool:
        return bool((await stock(shop, deleted))["retired"])

    await eventually(retired)
    code, problem = await restock(shop, deleted, {"quantity": 1})
    assert code == 422 and "deleted" in problem["detail"], problem
    assert (await stock(shop, deleted))["available"] == 0
