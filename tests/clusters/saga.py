"""The order saga under a steady load on a broker cluster, a node killed midway, and the check
that nothing was lost: every accepted checkout is one order that reached a final state
(COMPLETED or CANCELLED), stock is conserved, captured − refunded is what the completed orders
cost, every outbox row was sent and no message ended as a dead letter.

All services run embedded (one process, SQLite) on the cluster's bus, as ``mercato up`` would
with ``MERCATO_BROKER_URL`` naming the cluster; the carrier delivers at once, so orders that
were not cancelled complete. Declined cards and customers' cancellations are mixed in, and
there is less stock than the load asks for, so some orders are cancelled for want of it."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import dead_letters, outbox
from mercato.services import all_services, ordered_names
from tests.conftest import eventually
from tests.e2e.test_saga import ADDRESS, ADMIN, DECLINED_CARD, Shop, card
from tests.support import running
from tests.support import test_settings as make_settings

FINAL = ("COMPLETED", "CANCELLED")
PRICE = Decimal("7.50")


async def saga_under_load(
    data_dir: Path,
    broker_url: str,
    kill: Callable[[], Awaitable[str]],
    *,
    seconds: float,
    rate: float = 10.0,
    before_load: Callable[[], Awaitable[None]] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Place ``rate`` orders a second for ``seconds``, call ``kill`` a third of the way in
    (beside the load, which goes on), then check every invariant; return the figures.
    ``before_load`` runs once the services are up (their queues and streams declared)."""
    config = make_settings(
        data_dir,
        broker_url=broker_url,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        auth_rate_limit=100_000,
        carrier_delay="0",
        **settings,
    )
    async with running(all_services(), config) as (_, http):
        shop = Shop(http, config)
        shop.admin = await shop.sign_in(ADMIN["email"], ADMIN["password"])
        try:
            if before_load is not None:
                await before_load()
            return await _run(shop, kill, seconds, rate)
        finally:
            for engine in shop.engines.values():
                await engine.dispose()


async def _run(
    shop: Shop, kill: Callable[[], Awaitable[str]], seconds: float, rate: float
) -> dict[str, Any]:
    customers = [await shop.customer() for _ in range(6)]
    stock = {await shop.product(price=float(PRICE), quantity=20): 20 for _ in range(3)}
    products = list(stock)
    wanted = int(seconds * rate)
    placed: dict[str, tuple[dict[str, str], dict[str, int]]] = {}  # order → customer, items
    refused: list[str] = []

    async def checkout(i: int) -> None:
        who, items = customers[i % len(customers)], {random.choice(products): random.randint(1, 2)}
        body = {
            "items": [{"productId": p, "quantity": q} for p, q in items.items()],
            "payment": card(DECLINED_CARD if i % 7 == 3 else "4242 4242 4242 4242"),
            "shippingAddress": ADDRESS,
        }
        headers = {**who, "Idempotency-Key": f"checkout-{i}"}
        for _ in range(60):  # a 503 is retried with the same key, as a client should
            answer = await shop.http.post("/api/v1/orders", json=body, headers=headers)
            if answer.status_code != 503:
                break
            await asyncio.sleep(0.5)
        if answer.status_code != 202:
            refused.append(f"{answer.status_code} {answer.text[:200]}")
            return
        order_id = str(answer.json()["orderId"])
        placed[order_id] = (who, items)
        if i % 5 == 1:  # the customer changes their mind; too late is a 422, and fine
            await asyncio.sleep(random.uniform(0, 0.5))
            await shop.http.post(f"/api/v1/orders/{order_id}/cancel", headers=who)

    killed_at = 0.0

    async def killing() -> str:
        nonlocal killed_at
        victim = await kill()
        killed_at = time.monotonic() - started
        return victim

    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for i in range(wanted):
        if i == wanted // 3:  # beside the load, which goes on meanwhile
            killer = asyncio.create_task(killing())
        tasks.append(asyncio.create_task(checkout(i)))
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    victim = await killer
    await asyncio.gather(*tasks)
    load_ended = time.monotonic() - started
    assert not refused, refused

    orders = await _final(shop, placed)
    settled_at = time.monotonic() - started
    await _nothing_unsent_nor_dead(shop)
    completed = [o for o in orders.values() if o["status"] == "COMPLETED"]
    await _stock_conserved(shop, stock, completed)
    await _money_balanced(shop, orders, completed)
    listed = await shop.http.get("/api/v1/orders", params={"pageSize": 1}, headers=shop.admin)
    assert listed.json()["total"] == len(placed), "one order per accepted checkout"
    return {
        "ordersAccepted": len(placed),
        "completed": len(completed),
        "cancelled": len(orders) - len(completed),
        "nodeKilled": victim,
        "killedAtSeconds": round(killed_at, 1),
        "loadSeconds": round(load_ended, 1),
        "allFinalAfterSeconds": round(settled_at, 1),
    }


async def _final(
    shop: Shop, placed: dict[str, tuple[dict[str, str], dict[str, int]]]
) -> dict[str, dict[str, Any]]:
    """Every accepted order, once it is COMPLETED or CANCELLED (a message whose
    acknowledgement died with a node comes again after the broker's redelivery wait)."""
    orders: dict[str, dict[str, Any]] = {}

    async def all_final() -> bool:
        for order_id, (who, _) in placed.items():
            if orders.get(order_id, {}).get("status") not in FINAL:
                orders[order_id] = await shop.order(who, order_id)
        return all(o["status"] in FINAL for o in orders.values())

    try:
        await eventually(all_final, timeout=150, interval=1)
    except AssertionError:
        stuck = {i: o["status"] for i, o in orders.items() if o["status"] not in FINAL}
        raise AssertionError(
            f"orders never settled: {stuck}; (unsent, dead letters): {await _counts(shop)}"
        ) from None
    return orders


def _engine(shop: Shop, service: str) -> Database:
    if service not in shop.engines:
        url = service_url(shop.settings.database_url, service, shop.settings.data_dir)
        shop.engines[service] = open_database(url)
    return shop.engines[service]


async def _counts(shop: Shop) -> dict[str, tuple[int, int]]:
    """Per service: outbox rows not sent yet, dead letters."""
    found = {}
    for service in ordered_names():
        async with _engine(shop, service).connect() as conn:
            unsent = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            dead = select(func.count()).select_from(dead_letters)
            found[service] = ((await conn.scalar(unsent)) or 0, (await conn.scalar(dead)) or 0)
    return found


async def _nothing_unsent_nor_dead(shop: Shop) -> None:
    async def clean() -> bool:
        return all(found == (0, 0) for found in (await _counts(shop)).values())

    try:
        await eventually(clean, timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"(unsent, dead letters) per service: {await _counts(shop)}") from None


async def _stock_conserved(
    shop: Shop, stock: dict[str, int], completed: list[dict[str, Any]]
) -> None:
    """What the catalog shows available = what was put in − what completed orders took."""
    taken: dict[str, int] = defaultdict(int)
    for order in completed:
        for item in order["items"]:
            taken[item["productId"]] += int(item["quantity"])
    for product, put_in in stock.items():
        assert taken[product] <= put_in, f"{product} oversold"
        await shop.stock_is(product, put_in - taken[product])


async def _money_balanced(
    shop: Shop, orders: dict[str, dict[str, Any]], completed: list[dict[str, Any]]
) -> None:
    """From payment's own events: one capture at most per order, one refund at most, and
    captured − refunded = the completed orders' totals (every cancelled capture refunded)."""
    by_order: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))

    async def refunds_done() -> bool:
        by_order.clear()
        for kind in ("PaymentInitiated", "PaymentCompleted", "PaymentRefunded"):
            for data in await shop.events_of_type("payment", kind):
                by_order[data["orderId"]][kind].append(data)
        cancelled = [i for i, o in orders.items() if o["status"] == "CANCELLED"]
        return all(
            by_order[i]["PaymentRefunded"] for i in cancelled if by_order[i]["PaymentCompleted"]
        )

    await eventually(refunds_done, timeout=60, interval=0.5)
    captured = refunded = Decimal(0)
    for order_id in orders:
        events = by_order[order_id]
        assert len(events["PaymentCompleted"]) <= 1 and len(events["PaymentRefunded"]) <= 1
        if events["PaymentCompleted"]:
            captured += Decimal(str(events["PaymentInitiated"][0]["amount"]))
        refunded += sum((Decimal(str(r["amount"])) for r in events["PaymentRefunded"]), Decimal(0))
    assert captured - refunded == sum((Decimal(str(o["total"])) for o in completed), Decimal(0))
