"""Many customers racing for little stock, through the public API, embedded on SQLite and on
PostgreSQL: exactly as many orders as there is stock get through (RESERVED or beyond), every
other is cancelled with its payment refunded, stock ends at 0 and never went below it, and money
captured − refunded equals what the surviving orders paid.

Scaled by MERCATO_SAGA_LOAD ("orders/stock", default "200/50").
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually
from tests.e2e.test_saga import ADDRESS, Shop, card, open_shop

ORDERS, STOCK = (int(n) for n in os.environ.get("MERCATO_SAGA_LOAD", "200/50").split("/"))
PRICE = Decimal("3.50")


async def overselling_is_impossible(shop: Shop) -> None:
    buyers = [await shop.customer() for _ in range(min(ORDERS, 20))]
    cup = await shop.product(price=float(PRICE), quantity=STOCK)

    async def buy(i: int) -> str:
        # As a client should: a 503 ("retry later") is retried with the same Idempotency-Key,
        # which never makes a second order.
        body = {
            "items": [{"productId": cup, "quantity": 1}],
            "payment": card(),
            "shippingAddress": ADDRESS,
        }
        headers = {**buyers[i % len(buyers)], "Idempotency-Key": f"buy-{i}"}
        for _ in range(10):
            placed = await shop.http.post("/api/v1/orders", json=body, headers=headers)
            if placed.status_code != 503:
                break
            await asyncio.sleep(1)
        assert placed.status_code == 202, placed.text
        return str(placed.json()["orderId"])

    order_ids = await asyncio.gather(*(buy(i) for i in range(ORDERS)))

    async def settled(i: int, order_id: str) -> dict[str, Any]:
        who = buyers[i % len(buyers)]
        response = await shop.http.get(
            f"/api/v1/orders/{order_id}/wait",
            params={"until": "RESERVED", "timeout": 60},
            headers=who,
        )
        answer = response.json()
        assert answer["outcome"] in ("reached", "unreachable"), answer
        return dict(answer["order"])

    orders = await asyncio.gather(*(settled(i, o) for i, o in enumerate(order_ids)))
    through = [o for o in orders if o["status"] != "CANCELLED"]
    cancelled = [o for o in orders if o["status"] == "CANCELLED"]
    assert len(through) == STOCK and len(cancelled) == ORDERS - STOCK
    assert all("reservation failed" in o["cancelReason"] for o in cancelled)
    await shop.stock_is(cup, 0)

    # Money: every capture of a cancelled order refunded, once; the survivors' kept.
    async def refunds_done() -> bool:
        refunded = 0
        for o in cancelled:
            refunded += len(await shop.events("payment", "PaymentRefunded", o["orderId"]))
        return refunded == len(cancelled)

    await eventually(refunds_done, timeout=60)
    captured = refunded = Decimal(0)
    for order_id in order_ids:
        if await shop.events("payment", "PaymentCompleted", order_id):
            (started,) = await shop.events("payment", "PaymentInitiated", order_id)
            captured += Decimal(str(started["amount"]))
        for refund in await shop.events("payment", "PaymentRefunded", order_id):
            refunded += Decimal(str(refund["amount"]))
    assert captured - refunded == PRICE * STOCK
    # Stock never went below zero: every figure inventory announced was ≥ 0.
    engine_events = await shop.events_of_type("inventory", "StockUpdated")
    quantities = [e["quantity"] for e in engine_events if e["productId"] == cup]
    assert quantities and min(quantities) >= 0 and quantities[-1] == 0


@pytest.mark.long  # PostgreSQL's below is the one replicas run on
async def test_no_oversell_under_concurrent_orders_on_sqlite(tmp_path: Path) -> None:
    async for shop in open_shop(tmp_path):
        await overselling_is_impossible(shop)


@pytest.mark.postgres
async def test_no_oversell_under_concurrent_orders_on_postgres(
    tmp_path: Path, postgres_template: str
) -> None:
    async for shop in open_shop(tmp_path, database_url=postgres_template):
        await overselling_is_impossible(shop)
