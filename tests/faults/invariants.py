"""What must hold after every fault, read from the services' own databases.

``violations`` lists what does not hold now, each as "SUBJECT: what" (``product P: …``,
``order O: …``); ``settle`` asks again until nothing is listed or the bound passes (an order
still on its way is a violation that goes away by itself; a double capture is one that
stays), and returns what is left. Over every order of the session, not only the last case's:
a fault may break what an earlier case left. A subject an earlier case already reported
(``carried``) is left out, so one broken product does not fail every later case too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mercato.api.cart.v1 import cart_pb2
from mercato.services import ordered_names
from mercato.services.order.domain import Order, Status
from tests.faults.system import System

FINAL_ORDER = {"COMPLETED", "CANCELLED"}
HELD = {"RESERVED", "RETURNING"}  # reservations that still hold stock
OPEN_PAYMENT = {"INITIATED", "AUTHORIZED"}
# Effects each order has at most once: the events that announce them, by service.
ONCE = {
    "payment": ("PaymentCompleted", "PaymentFailed", "PaymentRefunded"),
    "inventory": ("StockReserved", "StockReservationFailed", "StockReleased", "StockDeducted"),
}
UNITS = Decimal(10_000)  # payment keeps amounts in ten-thousandths


@dataclass
class Expected:
    """What the session did that the databases must agree with: the products and the units
    put in, the (Idempotency-Key, order id) of every 202, and, per poison message's marker,
    the consumers that must have kept it as a dead letter."""

    received: dict[str, int] = field(default_factory=dict)
    answers: list[tuple[str, str]] = field(default_factory=list)
    poison: dict[str, set[str]] = field(default_factory=dict)


async def violations(system: System, expected: Expected) -> list[str]:
    found: list[str] = []
    async with system.database("order") as conn:
        orders = {r["id"]: r for r in await conn.fetch("SELECT * FROM orders")}
        lines = await conn.fetch("SELECT order_id, product_id, quantity FROM order_items")
    found += _one_order_per_key(await _checkouts(system), expected.answers, set(orders))
    found += [
        f"order {o}: {r['status']}, not final"
        for o, r in orders.items()
        if r["status"] not in FINAL_ORDER
    ]
    found += [
        f"order {o}: {r['status']}, waiting for {', '.join(p)}"
        for o, r in orders.items()
        if r["status"] in FINAL_ORDER and (p := _pending(r))
    ]
    found += await _stock(system, expected.received, orders, lines)
    found += await _money(system, orders)
    found += await _once(system)
    for service in ordered_names():
        async with system.database(service) as conn:
            unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            letters = await conn.fetch("SELECT consumer, event_type, body, error FROM dead_letters")
        if unsent:
            found.append(f"{service} outbox: {unsent} rows unsent")
        found += _letters(service, letters, expected.poison)
    return found


def _pending(row: Any) -> tuple[str, ...]:
    """What the order's outcome still waits for, as the order service reckons it."""
    facts = {name: row[name] for name in _FACTS}
    cancelled_from = Status(row["cancelled_from"]) if row["cancelled_from"] else None
    order = Order(
        order_id=row["id"],
        user_id=row["user_id"],
        currency=row["currency"],
        lines=(),
        status=Status(row["status"]),
        status_since=row["status_since"],
        created_at=row["created_at"],
        cancelled_from=cancelled_from,
        **facts,
    )
    return order.pending


_FACTS = (
    "paid",
    "refunded",
    "reserved",
    "payment_failed",
    "payment_cancelled",
    "reservation_failed",
    "released",
)


def subject(violation: str) -> str:
    return violation.split(": ", 1)[0]


async def settle(
    system: System, expected: Expected, bound: float, carried: frozenset[str] = frozenset()
) -> tuple[list[str], float]:
    """Ask until nothing is wrong (but what is about ``carried`` subjects) or ``bound``
    seconds pass: what is still wrong, and when (seconds) it was found right."""
    started = time.monotonic()
    while True:
        found = [v for v in await violations(system, expected) if subject(v) not in carried]
        waited = time.monotonic() - started
        if not found or waited > bound:
            return found, waited
        await asyncio.sleep(0.5)


async def _checkouts(system: System) -> dict[str, str]:
    """The cart's answer to every keyed checkout: key → order id."""
    async with system.database("cart") as conn:
        rows = await conn.fetch(
            "SELECT key, response FROM idempotency_keys WHERE scope LIKE 'cart.Checkout:%'"
        )
    return {r["key"]: cart_pb2.CheckoutReply.FromString(r["response"]).order_id for r in rows}


def _one_order_per_key(
    checkouts: dict[str, str], answers: Iterable[tuple[str, str]], orders: set[str]
) -> list[str]:
    """Every 202 of one key named the same order, the cart's; every keyed checkout made
    exactly one order and there is no other order."""
    found: list[str] = []
    by_key: dict[str, set[str]] = defaultdict(set)
    for key, order_id in answers:
        by_key[key].add(order_id)
    for key, ids in by_key.items():
        if len(ids) > 1 or checkouts.get(key) not in ids:
            found.append(f"key {key}: answered {sorted(ids)}, the cart kept {checkouts.get(key)}")
    made = set(checkouts.values())
    if len(made) < len(checkouts):
        found.append(f"checkouts: {len(checkouts) - len(made)} keys share an order")
    found += [f"checkout {o}: no order" for o in sorted(made - orders)]
    found += [f"order {o}: no checkout" for o in sorted(orders - made)]
    return found


async def _stock(
    system: System, received: dict[str, int], orders: dict[str, Any], lines: list[Any]
) -> list[str]:
    """Per product: nothing below zero; reserved = what held reservations hold;
    available + reserved + deducted = received; the units of orders not cancelled =
    reserved + deducted (no order has more than inventory gave it: no oversell)."""
    async with system.database("inventory") as conn:
        stock = {r["product_id"]: r for r in await conn.fetch("SELECT * FROM stock")}
        reservations = await conn.fetch("SELECT order_id, status, items FROM reservations")
    found: list[str] = []
    held: dict[str, int] = defaultdict(int)
    deducted: dict[str, int] = defaultdict(int)
    for r in reservations:
        into = held if r["status"] in HELD else deducted if r["status"] == "DEDUCTED" else None
        for product_id, quantity in json.loads(r["items"]) if into is not None else []:
            into[product_id] += quantity
        order = orders.get(r["order_id"])
        if r["status"] in HELD and order is not None and order["status"] in FINAL_ORDER:
            found.append(
                f"order {r['order_id']}: reservation {r['status']}, the order {order['status']}"
            )
    sold: dict[str, int] = defaultdict(int)
    for line in lines:
        order = orders.get(line["order_id"])
        if order is not None and order["status"] != "CANCELLED":
            sold[line["product_id"]] += line["quantity"]
    for product_id, put_in in received.items():
        row = stock.get(product_id)
        if row is None:
            found.append(f"product {product_id}: no stock row")
            continue
        available, reserved = row["available"], row["reserved"]
        gone = deducted[product_id]
        if available < 0 or reserved < 0:
            found.append(f"product {product_id}: available {available}, reserved {reserved}")
        if reserved != held[product_id]:
            found.append(
                f"product {product_id}: reserved {reserved}, reservations hold {held[product_id]}"
            )
        if available + reserved + gone != put_in:
            found.append(
                f"product {product_id}: available {available} + reserved {reserved} + "
                f"deducted {gone} = {available + reserved + gone}, received {put_in}"
            )
        if sold[product_id] != reserved + gone:
            found.append(
                f"product {product_id}: orders not cancelled hold {sold[product_id]} units, "
                f"inventory gave {reserved + gone}"
            )
    return found


async def _money(system: System, orders: dict[str, Any]) -> list[str]:
    """Captured − refunded = the total of the orders not cancelled, order by order: an order
    not cancelled has its total captured, a cancelled one has nothing captured left."""
    async with system.database("payment") as conn:
        payments = await conn.fetch("SELECT order_id, amount, status FROM payments")
    found: list[str] = []
    captured = {
        p["order_id"]: Decimal(p["amount"]) / UNITS for p in payments if p["status"] == "CAPTURED"
    }
    found += [
        f"order {p['order_id']}: payment {p['status']}"
        for p in payments
        if p["status"] in OPEN_PAYMENT
    ]
    kept = Decimal(0)
    for order_id, order in orders.items():
        total = Decimal(order["total_amount"])
        if order["status"] != "CANCELLED":
            kept += total
            if captured.get(order_id) != total:
                found.append(
                    f"order {order_id}: {order['status']}, captured "
                    f"{captured.get(order_id)}, total {total}"
                )
        elif order_id in captured:
            found.append(f"order {order_id}: cancelled, {captured[order_id]} still captured")
    net = sum(captured.values(), Decimal(0))
    if net != kept:
        found.append(f"money: captured − refunded {net} ≠ {kept}, the orders not cancelled")
    return found


async def _once(system: System) -> list[str]:
    """At most one payment, one reservation (its primary key), one shipment of each kind per
    order, and each effect's event at most once per order."""
    found: list[str] = []
    twice = "SELECT {cols}, count(*) AS n FROM {table} GROUP BY {cols} HAVING count(*) > 1"
    checks = [
        ("payment", "payments", "order_id"),
        ("shipping", "shipments", "order_id, kind"),
        *((service, "outbox", "event_type, aggregate") for service in ONCE),
    ]
    for service, table, cols in checks:
        async with system.database(service) as conn:
            rows = await conn.fetch(twice.format(cols=cols, table=table))
        for r in rows:
            if table != "outbox" or r["event_type"] in ONCE[service]:
                what = {k: v for k, v in r.items() if k not in ("order_id", "aggregate", "n")}
                order_id = r["order_id"] if table != "outbox" else r["aggregate"]
                found.append(f"order {order_id}: {r['n']} × {service}.{table} {what}")
    return found


def _letters(service: str, letters: list[Any], poison: dict[str, set[str]]) -> list[str]:
    """Every poison message that reached ``service``'s queue is one of its dead letters, and
    nothing else is."""
    found: list[str] = []
    # The body is TEXT, or bytes where dead letters keep any message as it came.
    kept = [_text(r["body"]) for r in letters]
    for marker, consumers in poison.items():
        if service in consumers and not any(marker in body for body in kept):
            found.append(f"{service} poison {marker}: not a dead letter")
    for r, body in zip(letters, kept, strict=True):
        if not any(marker in body for marker in poison):
            found.append(f"{service} dead letter {r['event_type']}: {r['error'][:200]}")
    return found


def _text(body: str | bytes) -> str:
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
