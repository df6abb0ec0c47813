"""Payments and wallets through the public API, embedded: an admin credits a wallet (once per
Idempotency-Key, concurrent credits all counted), the wallet pays an order (its ledger shows
the payment), the cancellation refunds it (a refund entry); a payment shows what was
authorized, captured and refunded; customer B never sees A's payment or wallet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.test_saga import Shop, card, open_shop

pytestmark = pytest.mark.asyncio(loop_scope="module")
WALLET = {"method": "wallet"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    async for opened in open_shop(tmp_path_factory.mktemp("wallets")):
        yield opened


async def user_id(shop: Shop, who: dict[str, str]) -> str:
    return str((await shop.http.get("/api/v1/users/me", headers=who)).json()["userId"])


async def credit(
    shop: Shop, user: str, body: dict[str, Any], key: str | None = None, status: int = 200
) -> dict[str, Any]:
    headers = {**shop.admin, **({"Idempotency-Key": key} if key else {})}
    response = await shop.http.post(
        f"/api/v1/admin/wallets/{user}/credit", json=body, headers=headers
    )
    assert response.status_code == status, response.text
    return dict(response.json())


async def wallet(shop: Shop, who: dict[str, str]) -> dict[str, Any]:
    response = await shop.http.get("/api/v1/wallet", headers=who)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def payments_of(shop: Shop, who: dict[str, str], order_id: str) -> list[dict[str, Any]]:
    response = await shop.http.get("/api/v1/payments", params={"orderId": order_id}, headers=who)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_credited_wallet_pays_an_order_and_its_cancellation_refunds_it(
    shop: Shop,
) -> None:
    ada = await shop.customer()
    ada_id = await user_id(shop, ada)
    gift = {"amount": 30, "reason": "welcome gift"}
    first = await credit(shop, ada_id, gift, key="gift-1")
    assert await credit(shop, ada_id, gift, key="gift-1") == first  # the same answer, once
    assert first["balance"] == 30 and first["currency"] == "USD"
    cup = await shop.product(price=10, quantity=5)
    order_id = (await shop.place(ada, [(cup, 2)], payment=WALLET))["orderId"]
    paid = await shop.wait(ada, order_id, "PAID")
    assert paid["payment"]["method"] == "wallet"
    mine = await wallet(shop, ada)
    assert mine["balance"] == 10
    assert [(e["kind"], e["amount"], e["orderId"], e["reason"]) for e in mine["entries"]] == [
        ("payment", -20, order_id, None),
        ("credit", 30, None, "welcome gift"),
    ]
    [payment] = await payments_of(shop, ada, order_id)
    assert payment["method"] == "wallet" and payment["status"] == "CAPTURED"
    assert (payment["authorized"], payment["captured"], payment["refunded"]) == (20, 20, 0)

    cancelled = await shop.http.post(
        f"/api/v1/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=ada
    )
    assert cancelled.status_code == 200, cancelled.text
    assert await shop.refunded(order_id) == 20
    mine = await wallet(shop, ada)
    assert mine["balance"] == 30
    assert (mine["entries"][0]["kind"], mine["entries"][0]["amount"]) == ("refund", 20)
    assert mine["entries"][0]["orderId"] == order_id
    assert sum(e["amount"] for e in mine["entries"]) == mine["balance"]
    shown = await shop.http.get(f"/api/v1/payments/{payment['paymentId']}", headers=ada)
    assert shown.status_code == 200, shown.text
    refunded = shown.json()
    assert refunded["status"] == "REFUNDED" and refunded["refunded"] == 20
    assert [r["reason"] for r in refunded["refunds"]] == ["changed my mind"]
    assert refunded["refunds"][0]["at"].endswith("Z")


async def test_an_unfunded_wallet_order_is_cancelled_and_takes_nothing(shop: Shop) -> None:
    bo = await shop.customer()
    cup = await shop.product(price=10, quantity=5)
    order_id = (await shop.place(bo, [(cup, 1)], payment=WALLET))["orderId"]
    await shop.reaches(bo, order_id, "CANCELLED")
    assert await wallet(shop, bo) == {"balance": 0, "currency": "USD", "entries": []}
    [payment] = await payments_of(shop, bo, order_id)
    assert payment["status"] == "FAILED" and payment["reason"] == "insufficient wallet credit"
    assert (payment["authorized"], payment["captured"]) == (0, 0)


async def test_a_card_payment_shows_its_last_four_digits(shop: Shop) -> None:
    cy = await shop.customer()
    cup = await shop.product(price=4.5, quantity=5)
    order_id = (await shop.place(cy, [(cup, 2)], payment=card()))["orderId"]
    await shop.wait(cy, order_id, "PAID")
    [payment] = await payments_of(shop, cy, order_id)
    assert (payment["method"], payment["last4"], payment["captured"]) == ("card", "4242", 9)
    assert payment["orderId"] == order_id and payment["refunds"] == []


async def test_customers_see_only_their_own_payments_and_wallet(shop: Shop) -> None:
    a, b = await shop.customer(), await shop.customer()
    cup = await shop.product(price=3, quantity=5)
    order_id = (await shop.place(a, [(cup, 1)], payment=card()))["orderId"]
    await shop.wait(a, order_id, "PAID")
    [payment] = await payments_of(shop, a, order_id)
    path = f"/api/v1/payments/{payment['paymentId']}"
    assert (await shop.http.get(path, headers=b)).status_code == 404
    assert (await shop.http.get(path)).status_code == 401
    assert (await shop.http.get(path, headers=shop.admin)).json() == payment
    assert await payments_of(shop, b, order_id) == []
    assert await payments_of(shop, shop.admin, order_id) == [payment]
    assert (await shop.http.get("/api/v1/payments/nope", headers=a)).status_code == 404
    assert (await shop.http.get("/api/v1/wallet")).status_code == 401
    a_id = await user_id(shop, a)
    await credit(shop, a_id, {"amount": 5, "reason": "sorry"})
    assert (await wallet(shop, b))["balance"] == 0
    by_b = await shop.http.post(
        f"/api/v1/admin/wallets/{a_id}/credit", json={"amount": 5, "reason": "x"}, headers=b
    )
    assert by_b.status_code == 403
    nobody = await shop.http.post(
        f"/api/v1/admin/wallets/{a_id}/credit", json={"amount": 5, "reason": "x"}
    )
    assert nobody.status_code == 401


async def test_concurrent_credits_all_count(shop: Shop) -> None:
    dee = await shop.customer()
    dee_id = await user_id(shop, dee)
    body = {"amount": 2.5, "reason": "promotion"}
    await asyncio.gather(*(credit(shop, dee_id, body) for _ in range(8)))
    mine = await wallet(shop, dee)
    assert mine["balance"] == 20 and len(mine["entries"]) == 8


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0, "reason": "zero"},
        {"amount": -5, "reason": "negative"},
        {"amount": 1_000_001, "reason": "too much"},
        {"amount": 1.234, "reason": "a tenth of a cent"},
        {"amount": "5", "reason": "a string"},
        {"amount": 5},
        {"amount": 5, "reason": ""},
        {"amount": 5, "reason": "ok", "currency": "usd"},
        {"amount": 5, "reason": "ok", "extra": 1},
    ],
)
async def test_a_bad_credit_is_refused_and_changes_nothing(
    shop: Shop, body: dict[str, Any]
) -> None:
    eve = await shop.customer()
    eve_id = await user_id(shop, eve)
    await credit(shop, eve_id, body, status=422)
    assert (await wallet(shop, eve))["balance"] == 0


async def test_crediting_an_unknown_user_is_a_404(shop: Shop) -> None:
    await credit(shop, "no-such-user", {"amount": 5, "reason": "typo"}, status=404)


async def test_a_wallet_asks_for_a_bounded_ledger(shop: Shop) -> None:
    fay = await shop.customer()
    fay_id = await user_id(shop, fay)
    for i in range(3):
        await credit(shop, fay_id, {"amount": 1, "reason": f"credit {i}"})
    short = await shop.http.get("/api/v1/wallet", params={"entries": 2}, headers=fay)
    assert [e["reason"] for e in short.json()["entries"]] == ["credit 2", "credit 1"]
    too_many = await shop.http.get("/api/v1/wallet", params={"entries": 501}, headers=fay)
    assert too_many.status_code == 422
