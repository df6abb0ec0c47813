"""inventory behind its real inbox: a batch of orders in one transaction, a redelivery."""

from __future__ import annotations

from pathlib import Path

from mercato.contracts.events import ProductCreated
from mercato.platform.inbox import InboxConsumer
from mercato.services.inventory.service import service
from tests.services.inventory.shop import inventory, order
from tests.services.replicas import message


async def test_a_batch_reserves_each_order_alone_and_redeliveries_are_dropped(
    tmp_path: Path,
) -> None:
    async with inventory(tmp_path) as inv:
        consume = InboxConsumer("inventory", inv.ctx.db, service.handlers)
        stocked = message(ProductCreated(productId="a", name="a", price=1, quantity=3))
        short = message(order("short", ("a", 2), ("missing", 1)))
        fits = message(order("fits", ("a", 2)))
        late = message(order("late", ("a", 2)))
        # One transaction for the batch: the failed order's savepoint gives back only its own.
        assert await consume([stocked, short, fits, late]) == [None] * 4
        assert await consume([fits, short]) == [None, None]  # the same event ids again
        assert [e.data["orderId"] for e in await inv.events("StockReserved")] == ["fits"]
        failed = await inv.events("StockReservationFailed")
        assert [(e.data["orderId"], e.data["items"]) for e in failed] == [
            ("short", [{"productId": "missing", "requested": 1, "available": 0}]),
            ("late", [{"productId": "a", "requested": 2, "available": 1}]),
        ]
        a = await inv.stock("a")
        assert (a.available, a.reserved) == (1, 2)
