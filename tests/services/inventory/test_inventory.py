"""inventory, embedded on SQLite: its handlers fed directly, its state and events checked."""

from __future__ import annotations

from pathlib import Path

from mercato.contracts.events import (
    Item,
    OrderCancelled,
    OrderCompleted,
    PaymentFailed,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ReturnShipmentReceived,
)
from mercato.services.inventory import handlers as h
from mercato.services.inventory import store
from tests.services.inventory.shop import Inventory, inventory, order


async def products(inv: Inventory, **stock: int) -> None:
    for product_id, quantity in stock.items():
        await inv.feed(
            h.stock_product,
            ProductCreated(productId=product_id, name=product_id, price=1, quantity=quantity),
        )


async def test_products_bring_stock_updates_and_warnings(tmp_path: Path) -> None:
    async with inventory(tmp_path, stock_low_threshold=3) as inv:
        await products(inv, a=10, b=2, c=0)
        assert (await inv.stock("a")).available == 10
        updates = {
            e.data["productId"]: e.data["quantity"] for e in await inv.events("StockUpdated")
        }
        assert updates == {"a": 10, "b": 2, "c": 0}
        assert [e.data for e in await inv.events("StockLow")] == [
            {"productId": "b", "quantity": 2, "threshold": 3}
        ]
        assert [e.data["productId"] for e in await inv.events("OutOfStock")] == ["c"]

        await inv.feed(h.set_product_stock, ProductUpdated(productId="a", quantity=4))
        await inv.feed(h.set_product_stock, ProductUpdated(productId="a", name="renamed"))
        assert (await inv.stock("a")).available == 4
        await inv.feed(h.retire_product, ProductDeleted(productId="a"))
        assert (await inv.stock("a")).retired
        assert (await inv.events("StockUpdated"))[-1].data == {"productId": "a", "quantity": 0}
        await inv.feed(h.reserve_stock, order("o1", ("a", 1)))
        assert (await inv.events("StockReservationFailed"))[0].data["items"] == [
            {"productId": "a", "requested": 1, "available": 0}
        ]


async def test_reservation_is_all_or_nothing(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await products(inv, a=5, b=1)
        await inv.feed(h.reserve_stock, order("o1", ("a", 3), ("b", 2)))
        assert (await inv.stock("a")).available == 5  # a was taken, then given back
        assert (await inv.stock("a")).reserved == 0
        assert (await inv.stock("b")).available == 1
        [failed] = await inv.events("StockReservationFailed")
        assert failed.data["orderId"] == "o1"
        assert failed.data["items"] == [{"productId": "b", "requested": 2, "available": 1}]
        assert await inv.events("StockReserved") == []

        await inv.feed(h.reserve_stock, order("o2", ("a", 2), ("b", 1), ("a", 1)))
        [reserved] = await inv.events("StockReserved")
        assert reserved.data["items"] == [
            {"productId": "a", "quantity": 3},
            {"productId": "b", "quantity": 1},
        ]
        a, b = await inv.stock("a"), await inv.stock("b")
        assert (a.available, a.reserved, b.available, b.reserved) == (2, 3, 0, 1)
        assert "b" in [e.data["productId"] for e in await inv.events("OutOfStock")]


async def test_release_deduct_and_return(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await products(inv, a=10)
        for order_id in ("paid-fail", "cancelled", "done", "in-delivery"):
            await inv.feed(h.reserve_stock, order(order_id, ("a", 2)))
        assert (await inv.stock("a")).available == 2

        await inv.feed(
            h.release_unpaid, PaymentFailed(paymentId="p", orderId="paid-fail", reason="x")
        )
        await inv.feed(h.release_cancelled, OrderCancelled(orderId="cancelled", reason="customer"))
        assert [e.data["orderId"] for e in await inv.events("StockReleased")] == [
            "paid-fail",
            "cancelled",
        ]
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (6, 4)

        await inv.feed(
            h.deduct_stock, OrderCompleted(orderId="done", paymentId="p", status="COMPLETED")
        )
        assert [e.data["orderId"] for e in await inv.events("StockDeducted")] == ["done"]
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (6, 2)

        # Cancelled while delivering: the goods stay reserved until the return arrives.
        cancel = OrderCancelled(orderId="in-delivery", reason="c", previousStatus="DELIVERING")
        await inv.feed(h.release_cancelled, cancel)
        assert (await inv.stock("a")).reserved == 2
        back = ReturnShipmentReceived(
            shipmentId="s1", orderId="in-delivery", items=[Item(productId="a", quantity=2)]
        )
        await inv.feed(h.receive_return, back)
        await inv.feed(h.receive_return, back)
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (8, 0)
        # The cancelled order's stock is back: it hears so once (its compensation is done).
        released = await inv.events("StockReleased")
        assert [e.data["orderId"] for e in released] == ["paid-fail", "cancelled", "in-delivery"]

        # A delivered order returned later: its goods come back on hand too, once.
        returned = ReturnShipmentReceived(
            shipmentId="s2", orderId="done", items=[Item(productId="a", quantity=2)]
        )
        await inv.feed(h.receive_return, returned)
        await inv.feed(h.receive_return, returned)
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (10, 0)

        # Restock is not lost by a release: everything received is accounted for.
        assert (await inv.events("StockUpdated"))[-1].data == {"productId": "a", "quantity": 10}


async def test_duplicates_change_nothing(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await products(inv, a=5)
        await inv.feed(h.reserve_stock, order("o1", ("a", 2)))
        await inv.feed(h.reserve_stock, order("o1", ("a", 2)))
        assert len(await inv.events("StockReserved")) == 1
        assert (await inv.stock("a")).available == 3
        await products(inv, a=5)  # a late duplicate of the creation keeps the reservation
        assert (await inv.stock("a")).available == 3
        for _ in range(2):
            await inv.feed(h.release_cancelled, OrderCancelled(orderId="o1", reason="c"))
            await inv.feed(h.release_unpaid, PaymentFailed(paymentId="p", orderId="o1", reason="x"))
            await inv.feed(h.deduct_stock, OrderCompleted(orderId="o1", paymentId="p", status="X"))
        assert len(await inv.events("StockReleased")) == 1
        assert await inv.events("StockDeducted") == []
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (5, 0)
        # A failed reservation stays failed: the order is not retried behind the saga's back.
        await inv.feed(h.reserve_stock, order("o2", ("a", 9)))
        await inv.feed(h.reserve_stock, order("o2", ("a", 1)))
        assert len(await inv.events("StockReservationFailed")) == 1
        assert (await inv.stock("a")).available == 5


async def test_cancellation_before_creation_leaves_a_tombstone(tmp_path: Path) -> None:
    async with inventory(tmp_path) as inv:
        await products(inv, a=5)
        await inv.feed(h.release_cancelled, OrderCancelled(orderId="o1", reason="timeout"))
        await inv.feed(h.release_unpaid, PaymentFailed(paymentId="p", orderId="o2", reason="x"))
        await inv.feed(h.reserve_stock, order("o1", ("a", 2)))
        await inv.feed(h.reserve_stock, order("o2", ("a", 2)))
        assert (await inv.stock("a")).available == 5
        assert await inv.events("StockReserved") == []
        # Each tombstone answers the order: nothing is held for it, and nothing will be.
        released = await inv.events("StockReleased")
        assert [(e.data["orderId"], e.data["items"]) for e in released] == [("o1", []), ("o2", [])]
        # Completion before creation (impossible in the saga) changes nothing either.
        await inv.feed(h.deduct_stock, OrderCompleted(orderId="o3", paymentId="p", status="X"))
        await inv.feed(h.reserve_stock, order("o3", ("a", 1)))
        assert (await inv.stock("a")).available == 4


async def test_a_new_threshold_is_used_at_once(tmp_path: Path) -> None:
    # The threshold is cached per engine; writing it here forgets the cached value.
    async with inventory(tmp_path, stock_low_threshold=3) as inv:
        await products(inv, a=10)
        await inv.feed(h.reserve_stock, order("o1", ("a", 8)))
        assert [e.data["quantity"] for e in await inv.events("StockLow")] == [2]
        async with inv.ctx.db.begin() as conn:
            await store.set_threshold(conn, 10)
        await inv.feed(h.reserve_stock, order("o2", ("a", 1)))
        assert (await inv.events("StockLow"))[-1].data == {
            "productId": "a",
            "quantity": 1,
            "threshold": 10,
        }
