"""The check after a scenario settles: nothing lost, no oversell, money balanced."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from mercato.bench.client import Client
from mercato.bench.shoppers import Headers, Placed, collect, settled


def reserved_units(placed: list[Placed]) -> dict[str, int]:
    """Units each product gave to orders that were not cancelled."""
    units: dict[str, int] = defaultdict(int)

    for p in placed:
        if p.order.get("status") not in (None, "CANCELLED"):
            for item in p.order.get("items", []):
                units[item["productId"]] += int(item["quantity"])
    return units


def money(placed: list[Placed]) -> dict[str, str | bool]:
    """Captured − refunded (from the orders' payments) against the total of orders not
    cancelled; every cancelled order's capture must have been refunded."""
    net = kept = Decimal(0)
    for p in placed:
        total, payment = Decimal(str(p.order.get("total", 0))), p.order.get("payment", {})
        if payment.get("paid") and not payment.get("refunded"):
            net += total
        if p.order.get("status") not in (None, "CANCELLED"):
            kept += total
    return {"capturedMinusRefunded": str(net), "ordersNotCancelled": str(kept), "ok": net == kept}


async def stock(
    http: Client, products: dict[str, int], placed: list[Placed], timeout: float
) -> dict[str, Any]:
    """Per product: available never below 0, units reserved ≤ units put in, and what the
    catalog shows available = put in − reserved (polled: the catalog learns it by event)."""
    units = {p: n for p, n in reserved_units(placed).items() if p in products}
    deadline = time.monotonic() + timeout
    shown: dict[str, int | None] = {}
    while True:
        for product_id in products:
            response = await http.get(f"/api/v1/products/{product_id}")
            shown[product_id] = response.json().get("available") if response.is_success else None
        wrong = [p for p, put in products.items() if shown[p] != put - units.get(p, 0)]
        if not wrong or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    oversold = [p for p, put in products.items() if units.get(p, 0) > put]
    negative = [p for p, v in shown.items() if v is not None and v < 0]
    return {
        "unitsPutIn": sum(products.values()),
        "unitsReserved": sum(units.values()),
        "oversold": oversold,
        "negative": negative,
        "availableMismatch": wrong,
        "ok": not oversold and not negative and not wrong,
    }


async def unanswered(
    http: Client, admin: Headers, products: dict[str, int], known: set[str]
) -> list[Placed]:
    """Orders of these products that no shopper heard of: made by a checkout whose answer
    was lost (a 503 after the gateway's deadline while the cart service went on)."""
    found: list[Placed] = []
    page = 1
    while True:
        params = {"page": page, "pageSize": 100}
        listed = await http.get("/api/v1/orders", params=params, headers=admin)
        if not listed.is_success:
            break
        body = listed.json()
        for order in body["items"]:
            ours = any(i["productId"] in products for i in order["items"])
            if ours and order["orderId"] not in known:
                found.append(Placed(order["orderId"], -1, 0.0))
        if page * 100 >= body["total"]:
            break
        page += 1
    return found


async def check(
    http: Client,
    admin: Headers,
    products: dict[str, int],
    placed: list[Placed],
    unsettled: list[Placed],
    known: set[str],
    timeout: float = 15,
) -> dict[str, Any]:
    """``placed``: this scenario's orders (read and settled); ``known``: every order id the
    shoppers were given so far, in all scenarios."""
    orphans = await unanswered(http, admin, products, known)
    unsettled = unsettled + await collect(http, lambda _: admin, orphans, timeout)
    every = placed + orphans
    listed = await http.get("/api/v1/orders", params={"pageSize": 1}, headers=admin)
    in_system = int(listed.json()["total"]) if listed.is_success else None
    by_status: dict[str, int] = defaultdict(int)
    for p in every:
        by_status[str(p.order.get("status", "UNREAD"))] += 1
    result: dict[str, Any] = {
        "ordersPlaced": len(placed),
        "ordersFromUnansweredCheckouts": len(orphans),
        "ordersInSystem": in_system,
        "ordersAnsweredSoFar": len(known),
        "byStatus": dict(sorted(by_status.items())),
        "unsettled": [p.order_id for p in unsettled if not settled(p.order)],
        "stock": await stock(http, products, every, timeout),
        "money": money(every),
    }
    # Every accepted checkout's order is there and settled, and so is every order made by a
    # checkout whose answer was lost.
    result["nothingLost"] = not result["unsettled"] and (
        in_system is not None and in_system >= len(known)
    )
    result["ok"] = bool(result["nothingLost"] and result["stock"]["ok"] and result["money"]["ok"])
    return result
