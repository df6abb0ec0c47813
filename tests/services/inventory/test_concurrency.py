"""No oversell: 200 concurrent reservations for 50 units, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from mercato.contracts.events import ProductCreated
from mercato.services.inventory import handlers as h
from mercato.services.inventory.tables import stock
from tests.services.inventory.shop import Inventory, inventory, order

ORDERS = 200
STOCK = 50


async def race(inv: Inventory) -> None:
    await inv.feed(
        h.stock_product, ProductCreated(productId="p", name="p", price=1, quantity=STOCK)
    )
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        # Samples the committed stock while the race runs: it must never be seen below zero.
        while not done.is_set():
            async with inv.ctx.db.connect() as conn:
                lowest.append(int(await conn.scalar(sa.select(stock.c.available)) or 0))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(
        *(inv.feed(h.reserve_stock, order(f"o{i}", ("p", 1))) for i in range(ORDERS))
    )
    done.set()
    await watcher

    assert len(await inv.events("StockReserved")) == STOCK
    failed = await inv.events("StockReservationFailed")
    assert len(failed) == ORDERS - STOCK
    assert all(
        f.data["items"] == [{"productId": "p", "requested": 1, "available": 0}] for f in failed
    )
    final = await inv.stock("p")
    assert (final.available, final.reserved) == (0, STOCK)
    assert lowest and min(lowest) >= 0


async def test_no_oversell_on_sqlite(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await race(inv)


async def test_no_oversell_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async with inventory(tmp_path, database_url=postgres_template) as inv:
        await race(inv)


async def test_shortfall_takes_nothing_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    # The savepoint rollback of a partial reservation, on PostgreSQL too.
    async with inventory(tmp_path, database_url=postgres_template) as inv:
        for product_id, quantity in (("a", 5), ("b", 1)):
            created = ProductCreated(productId=product_id, name="x", price=1, quantity=quantity)
            await inv.feed(h.stock_product, created)
        await inv.feed(h.reserve_stock, order("o1", ("a", 3), ("b", 2)))
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (5, 0)
        assert len(await inv.events("StockReservationFailed")) == 1
        await inv.feed(h.reserve_stock, order("o2", ("a", 3), ("b", 1)))
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (2, 3)


async def two_item_race(inv: Inventory) -> None:
    # Every order takes one "a" and one "b"; "b" runs out first. Each order is reserved
    # whole or not at all, whichever transaction wins each row.
    for product_id, quantity in (("a", 40), ("b", 15)):
        created = ProductCreated(productId=product_id, name="x", price=1, quantity=quantity)
        await inv.feed(h.stock_product, created)
    await asyncio.gather(
        *(inv.feed(h.reserve_stock, order(f"o{i}", ("b", 1), ("a", 1))) for i in range(30))
    )
    assert len(await inv.events("StockReserved")) == 15
    assert len(await inv.events("StockReservationFailed")) == 15
    a, b = await inv.stock("a"), await inv.stock("b")
    assert (a.available, a.reserved, b.available, b.reserved) == (25, 15, 0, 15)


async def test_two_item_orders_are_all_or_nothing_on_sqlite(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await two_item_race(inv)


async def test_two_item_orders_are_all_or_nothing_on_postgres(
    tmp_path: Path, postgres_template: str
) -> None:
    async with inventory(tmp_path, database_url=postgres_template) as inv:
        await two_item_race(inv)


async def test_racing_duplicates_of_one_order_reserve_once_on_postgres(
    tmp_path: Path, postgres_template: str
) -> None:
    # The same OrderCreated under several event ids at once (past the inbox): the reservation
    # row's ON CONFLICT DO NOTHING lets one of them reserve, the others wait and do nothing.
    async with inventory(tmp_path, database_url=postgres_template) as inv:
        await inv.feed(
            h.stock_product, ProductCreated(productId="p", name="p", price=1, quantity=9)
        )
        await asyncio.gather(*(inv.feed(h.reserve_stock, order("o1", ("p", 2))) for _ in range(8)))
        assert len(await inv.events("StockReserved")) == 1
        p = await inv.stock("p")
        assert (p.available, p.reserved) == (7, 2)
