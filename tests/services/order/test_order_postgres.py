"""order on PostgreSQL: the saga's row locks, the timeout query and concurrent news for one
order (the participants' events and a cancellation racing) keep one consistent history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mercato.api.order.v1 import order_pb2 as pb
from mercato.contracts.events import (
    Item,
    PaymentCompleted,
    ShipmentCreated,
    ShipmentDelivered,
    StockReserved,
)
from mercato.platform.unit_of_work import transaction
from mercato.services.order import orders
from mercato.services.order.domain import history_is_consistent
from mercato.services.order.store import history, load
from tests.conftest import eventually
from tests.services.order.conftest import Shop, start_shop
from tests.services.order.test_order_service import (
    checkout,
    create_request,
    news_in_one_batch_read_their_orders_at_once,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
async def shop(tmp_path: Path, postgres_template: str) -> AsyncIterator[Shop]:
    async for running in start_shop(
        tmp_path, database_url=postgres_template, order_payment_timeout=0.5
    ):
        yield running


async def test_news_and_a_cancellation_racing_leave_one_consistent_history(shop: Shop) -> None:
    _, me = await shop.customer("ada@example.com")
    placed = [
        await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=me) for _ in range(5)
    ]
    ids = [p.order_id for p in placed]

    async def race(order_id: str) -> None:
        news = [
            shop.tell(PaymentCompleted(paymentId=f"pay-{order_id}", orderId=order_id, status="OK")),
            shop.tell(StockReserved(orderId=order_id, items=[Item(productId="p-1", quantity=1)])),
            shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=order_id), metadata=me),
        ]
        await asyncio.gather(*news)

    await asyncio.gather(*(race(i) for i in ids))
    for order_id in ids:
        async with shop.ctx.db.connect() as conn:
            changes = await history(conn, order_id)
        assert history_is_consistent(changes[0].at, changes)
        assert changes[-1].to_status == "CANCELLED"
        cancels = await shop.published("OrderCancelled", order_id)
        # One cancellation, plus one compensation for each success that came after it.
        assert 1 <= len(cancels) <= 3
        assert len(await shop.published("OrderPaid", order_id)) <= 1


async def test_the_timeout_task_cancels_on_postgres(shop: Shop) -> None:
    await shop.tell(checkout("o-pg"))
    cancelled = await eventually(partial(shop.published, "OrderCancelled", "o-pg"), timeout=10)
    assert cancelled[0].reason == "timed out waiting for the payment"
    assert cancelled[0].previousStatus == "CREATED"
    paid = await shop.orders.ListOrders(
        pb.ListOrdersRequest(status="CANCELLED"),
        metadata=await shop.sign_in("root@shop.example", "admin-pass-42"),
    )
    assert [o.order_id for o in paid.orders] == ["o-pg"]
    assert paid.orders[0].total.amount == "25.25"


async def test_racing_placings_and_additions_of_a_draft_make_one_order(shop: Shop) -> None:
    user_id, me = await shop.customer("ada@example.com")
    draft = await shop.orders.CreateDraft(pb.CreateDraftRequest(), metadata=me)
    add = pb.AddDraftItemRequest(order_id=draft.order_id, product_id="p-1", quantity=1)
    await asyncio.gather(*(shop.orders.AddDraftItem(add, metadata=me) for _ in range(5)))
    place = pb.PlaceDraftRequest(order_id=draft.order_id)
    placed = await asyncio.gather(*(shop.orders.PlaceDraft(place, metadata=me) for _ in range(5)))
    assert {(p.order_id, p.user_id, p.total.amount) for p in placed} == {
        (draft.order_id, user_id, "50")
    }
    assert len(await shop.published("OrderCreated", draft.order_id)) == 1


async def test_a_saga_step_updates_the_order_and_its_history_in_one_statement(
    shop: Shop,
) -> None:
    """On PostgreSQL a round trip is the cost that counts: a step's update and its history
    rows (one or several) go as one statement, and all of them are written."""
    await shop.tell(checkout("o-step"))
    sent: list[str] = []

    def logger(logged: Any) -> None:
        sent.append(logged.query)

    steps = [
        StockReserved(
            orderId="o-step",
            items=[Item(productId="p-1", quantity=2), Item(productId="p-2", quantity=1)],
        ),
        PaymentCompleted(paymentId="pay-step", orderId="o-step", status="OK"),
        ShipmentCreated(shipmentId="s-step", orderId="o-step"),
        ShipmentDelivered(shipmentId="s-step", orderId="o-step"),
    ]
    grew: list[int] = []
    for version, news in enumerate(steps, start=2):
        async with shop.ctx.db.connect() as conn:
            before = len(await history(conn, "o-step"))
        sent.clear()
        async with transaction(shop.ctx.db, "order") as uow:
            uow.conn.raw.add_query_logger(logger)
            assert await orders.apply(uow, "o-step", news) is not None
            await asyncio.sleep(0)  # asyncpg hands the query to its loggers with call_soon
            uow.conn.raw.remove_query_logger(logger)
        async with shop.ctx.db.connect() as conn:
            stored = await load(conn, "o-step")
            changes = await history(conn, "o-step")
        assert stored is not None and stored.version == version
        assert changes[-1].to_status == stored.order.status
        assert history_is_consistent(changes[0].at, changes)
        writes = [
            q for q in sent if not q.startswith(("SELECT", "BEGIN", "COMMIT", "UPDATE order_items"))
        ]
        grew.append(len(changes) - before)
        assert len(writes) == 1, writes
        # With history rows, the statement that writes them; without, the update alone.
        assert writes[0].startswith("WITH saved AS") == (grew[-1] > 0), writes
    assert stored.order.delivered
    assert grew == [0, 2, 1, 1]  # a step of none, one of several rows, two of one


async def test_news_in_one_batch_lock_their_orders_at_once(
    tmp_path: Path, postgres_template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default payment timeout: the fixture's short one would have the timeout task
    # reading (and cancelling) the orders meanwhile.
    async for shop in start_shop(tmp_path, database_url=postgres_template):
        await news_in_one_batch_read_their_orders_at_once(shop, monkeypatch)
