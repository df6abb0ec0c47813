"""order embedded (in-process bus, SQLite): checkouts and API calls become orders, the
participants' events move them, and what it keeps and publishes is checked."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.common.v1 import common_pb2
from mercato.api.order.v1 import order_pb2 as pb
from mercato.contracts.events import (
    Address,
    CartCheckedOut,
    CartItem,
    Item,
    OrderCancelled,
    Payload,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentMethod,
    ShipmentCreated,
    ShipmentDelivered,
    StockReserved,
)
from mercato.platform.bus.port import RawMessage, topic_of
from mercato.platform.envelope import AMQP_PREFIX
from mercato.platform.storage.tables import dead_letters
from mercato.services.order import store
from tests.conftest import eventually
from tests.services.order.conftest import ADMIN, Shop, envelope_of, start_shop

ADDRESS = Address(name="Ada", line1="1 Main St", city="Paris", postalCode="75001", country="FR")
CARD = PaymentMethod(method="card", token="tok_123", last4="4242")


def checkout(order_id: str, user_id: str = "u-1") -> CartCheckedOut:
    return CartCheckedOut(
        userId=user_id,
        cartId="cart-1",
        orderId=order_id,
        items=[
            CartItem(productId="p-1", quantity=2, price=Decimal("10.00")),
            CartItem(productId="p-2", quantity=1, price=Decimal("5.25")),
        ],
        payment=CARD,
        shippingAddress=ADDRESS,
    )


def payment_news(order_id: str) -> list[object]:
    return [
        PaymentInitiated(
            paymentId="pay-1",
            orderId=order_id,
            userId="u-1",
            amount=Decimal("25.25"),
            status="PENDING",
        ),
        PaymentCompleted(paymentId="pay-1", orderId=order_id, status="CAPTURED"),
    ]


RESERVED = StockReserved(orderId="o-1", items=[Item(productId="p-1", quantity=2)])


async def statuses(shop: Shop, order_id: str) -> list[str]:
    return [e.status for e in await shop.published("OrderStatusChanged", order_id)]


async def test_a_checkout_becomes_an_order_once(shop: Shop) -> None:
    await shop.tell(checkout("o-1"))
    await shop.tell(checkout("o-1"))  # the cart published its checkout twice
    (created,) = await shop.published("OrderCreated")
    assert created.orderId == "o-1" and created.totalAmount == Decimal("25.25")
    assert created.payment == CARD and created.shippingAddress == ADDRESS
    assert [(i.productId, i.quantity, i.price) for i in created.items] == [
        ("p-1", 2, Decimal("10.00")),
        ("p-2", 1, Decimal("5.25")),
    ]
    assert await statuses(shop, "o-1") == ["CREATED"]


async def test_the_participants_news_carries_the_order_to_completion(shop: Shop) -> None:
    await shop.tell(checkout("o-1"))
    for news in [*payment_news("o-1"), RESERVED]:
        await shop.tell(news)  # type: ignore[arg-type]
    handover = (await shop.published("OrderStatusChanged", "o-1"))[-1]
    assert handover.status == "RESERVED" and handover.shippingAddress == ADDRESS
    assert [(i.productId, i.quantity) for i in handover.items] == [("p-1", 2), ("p-2", 1)]
    await shop.tell(ShipmentCreated(shipmentId="s-1", orderId="o-1"))
    await shop.tell(ShipmentDelivered(shipmentId="s-1", orderId="o-1"))
    assert await statuses(shop, "o-1") == [
        "CREATED",
        "PAID",
        "RESERVED",
        "DELIVERING",
        "COMPLETED",
    ]
    (paid,) = await shop.published("OrderPaid")
    assert paid.paymentId == "pay-1" and paid.amount == Decimal("25.25")
    (completed,) = await shop.published("OrderCompleted")
    assert completed.paymentId == "pay-1" and completed.userId == "u-1"
    assert [(i.productId, i.quantity) for i in completed.items or []] == [("p-1", 2), ("p-2", 1)]

    admin = await shop.sign_in(ADMIN[0], ADMIN[1])
    order = await shop.orders.GetOrder(pb.GetOrderRequest(order_id="o-1"), metadata=admin)
    assert order.status == "COMPLETED" and order.shipment_id == "s-1"
    assert {i.status for i in order.items} == {"EXECUTED"}
    assert [(h.from_status, h.to_status) for h in order.history] == [
        ("", "CREATED"),
        ("CREATED", "PAID"),
        ("PAID", "RESERVED"),
        ("RESERVED", "DELIVERING"),
        ("DELIVERING", "COMPLETED"),
    ]
    assert order.payment.paid and order.payment.last4 == "4242" and order.cart_id == "cart-1"


async def test_reordered_and_repeated_news_ends_the_same(shop: Shop) -> None:
    await shop.tell(checkout("o-1"))
    news = [
        ShipmentDelivered(shipmentId="s-1", orderId="o-1"),
        RESERVED,
        *payment_news("o-1"),
        RESERVED,
        ShipmentCreated(shipmentId="s-1", orderId="o-1"),
    ]
    for event in reversed(news):
        await shop.tell(event)  # type: ignore[arg-type]
    for event in news:
        await shop.tell(event)  # type: ignore[arg-type]
    assert await statuses(shop, "o-1") == [
        "CREATED",
        "PAID",
        "RESERVED",
        "DELIVERING",
        "COMPLETED",
    ]
    assert len(await shop.published("OrderPaid")) == 1


async def test_a_failed_payment_cancels_and_a_late_capture_is_compensated(shop: Shop) -> None:
    await shop.tell(checkout("o-1"))
    await shop.tell(PaymentFailed(paymentId="pay-1", orderId="o-1", reason="card declined"))
    (cancelled,) = await shop.published("OrderCancelled")
    assert cancelled.previousStatus == "CREATED" and "card declined" in cancelled.reason
    await shop.tell(RESERVED)  # inventory reserved before it heard of the cancellation
    again = (await shop.published("OrderCancelled"))[-1]
    assert isinstance(again, OrderCancelled) and again.previousStatus == "CREATED"
    assert "after the cancellation" in again.reason
    assert await statuses(shop, "o-1") == ["CREATED", "CANCELLED"]


async def test_news_of_an_unknown_order_is_ignored(shop: Shop) -> None:
    await shop.tell(PaymentCompleted(paymentId="pay-9", orderId="nobody", status="CAPTURED"))
    assert await shop.published() == []


async def test_a_malformed_event_goes_to_the_dead_letters(shop: Shop) -> None:
    await shop.system.bus.publish_raw(
        "payment.PaymentCompleted",
        {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "x", "ce-type": "PaymentCompleted"},
        b'{"orderId": 42}',
    )

    async def dead() -> list[object]:
        async with shop.ctx.db.connect() as conn:
            return list((await conn.execute(select(dead_letters.c.error))).all())

    (letter,) = await eventually(dead)
    assert "invalid PaymentCompleted payload" in letter.error


def create_request(*items: tuple[str, int]) -> pb.CreateOrderRequest:
    request = pb.CreateOrderRequest(
        items=[pb.ItemRequest(product_id=p, quantity=q) for p, q in items],
        payment=pb.PaymentMethod(method="card", token="tok_9", last4="4242"),
    )
    request.shipping_address.CopyFrom(
        pb.Address(name="Bo", line1="2 Side St", city="Lyon", postal_code="69001", country="FR")
    )
    return request


async def test_create_order_prices_from_the_catalog_and_honours_the_idempotency_key(
    shop: Shop,
) -> None:
    user_id, me = await shop.customer("bo@example.com")
    request = create_request(("p-1", 1), ("p-3", 2))
    keyed = [*me, ("idempotency-key", "order-1")]
    first = await shop.orders.CreateOrder(request, metadata=keyed)
    again = await shop.orders.CreateOrder(request, metadata=keyed)
    assert first == again and first.user_id == user_id and first.status == "CREATED"
    assert first.total == common_pb2.Money(amount="209.98", currency="USD")
    assert [h.to_status for h in first.history] == ["CREATED"]
    assert len(await shop.published("OrderCreated")) == 1
    other = await shop.orders.CreateOrder(request, metadata=me)
    assert other.order_id != first.order_id

    listed = await shop.orders.ListOrders(pb.ListOrdersRequest(), metadata=me)
    assert [o.order_id for o in listed.orders] == [other.order_id, first.order_id]
    assert listed.page.total == 2


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ((), grpc.StatusCode.INVALID_ARGUMENT),
        ((("p-1", 0),), grpc.StatusCode.INVALID_ARGUMENT),
        ((("nope", 1),), grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_create_order_refuses_what_cannot_be_ordered(
    shop: Shop, items: tuple[tuple[str, int], ...], code: grpc.StatusCode
) -> None:
    _, me = await shop.customer("bo@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CreateOrder(create_request(*items), metadata=me)
    assert refused.value.code() == code
    assert await shop.published("OrderCreated") == []


async def test_a_customer_sees_only_their_own_orders(shop: Shop) -> None:
    _, ada = await shop.customer("ada@example.com")
    bo_id, bo = await shop.customer("bo@example.com")
    mine = await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=ada)
    for call, message in [
        (shop.orders.GetOrder, pb.GetOrderRequest(order_id=mine.order_id)),
        (shop.orders.CancelOrder, pb.CancelOrderRequest(order_id=mine.order_id)),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(message, metadata=bo)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.ListOrders(pb.ListOrdersRequest(user_id="someone"), metadata=bo)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await shop.orders.ListOrders(pb.ListOrdersRequest(), metadata=bo)).orders == []
    admin = await shop.sign_in(ADMIN[0], ADMIN[1])
    everyone = await shop.orders.ListOrders(pb.ListOrdersRequest(), metadata=admin)
    assert [o.order_id for o in everyone.orders] == [mine.order_id]
    for_bo = create_request(("p-2", 1))
    for_bo.user_id = bo_id
    placed = await shop.orders.CreateOrder(for_bo, metadata=admin)
    assert placed.user_id == bo_id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CreateOrder(for_bo, metadata=ada)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.GetOrder(pb.GetOrderRequest(order_id=mine.order_id))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_cancelling_compensates_and_a_completed_order_stays(shop: Shop) -> None:
    user_id, me = await shop.customer("ada@example.com")
    placed = await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=me)
    order_id = placed.order_id
    await shop.tell(PaymentCompleted(paymentId="pay-1", orderId=order_id, status="CAPTURED"))
    cancelled = await shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=order_id), metadata=me)
    assert cancelled.status == "CANCELLED" and {i.status for i in cancelled.items} == {"CANCELED"}
    again = await shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=order_id), metadata=me)
    assert again.version == cancelled.version
    (event,) = await shop.published("OrderCancelled")
    assert event.previousStatus == "PAID" and event.userId == user_id

    done = await shop.orders.CreateOrder(create_request(("p-2", 1)), metadata=me)
    for news in [
        PaymentCompleted(paymentId="pay-2", orderId=done.order_id, status="CAPTURED"),
        StockReserved(orderId=done.order_id, items=[Item(productId="p-2", quantity=1)]),
        ShipmentDelivered(shipmentId="s-2", orderId=done.order_id),
    ]:
        await shop.tell(news)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=done.order_id), metadata=me)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_update_order_cancels_or_readdresses_but_never_rewrites(shop: Shop) -> None:
    _, me = await shop.customer("ada@example.com")
    admin = await shop.sign_in(ADMIN[0], ADMIN[1])
    placed = await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=me)
    move = pb.UpdateOrderRequest(order_id=placed.order_id)
    move.shipping_address.CopyFrom(
        pb.Address(name="Bo", line1="9 New St", city="Nice", postal_code="06000", country="FR")
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.UpdateOrder(move, metadata=me)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    moved = await shop.orders.UpdateOrder(move, metadata=admin)
    assert moved.shipping_address.line1 == "9 New St" and moved.status == "CREATED"
    for bad in [
        pb.UpdateOrderRequest(order_id=placed.order_id, status="COMPLETED"),
        pb.UpdateOrderRequest(
            order_id=placed.order_id, items=[pb.OrderItemUpdate(product_id="p-1", quantity=5)]
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await shop.orders.UpdateOrder(bad, metadata=admin)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stop = pb.UpdateOrderRequest(order_id=placed.order_id, status="CANCELED", reason="fraud")
    stopped = await shop.orders.UpdateOrder(stop, metadata=me)
    assert stopped.status == "CANCELLED" and stopped.cancel_reason == "fraud"


async def test_wait_answers_when_the_status_is_reached(shop: Shop) -> None:
    _, me = await shop.customer("ada@example.com")
    placed = await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=me)
    order_id = placed.order_id
    waiting = asyncio.ensure_future(
        shop.orders.WaitOrder(
            pb.WaitOrderRequest(order_id=order_id, until="PAID", timeout_seconds=10), metadata=me
        )
    )
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await shop.tell(PaymentCompleted(paymentId="pay-1", orderId=order_id, status="CAPTURED"))
    answer = await asyncio.wait_for(waiting, 5)
    assert answer.outcome == "reached" and answer.order.status == "PAID"
    late = await shop.orders.WaitOrder(
        pb.WaitOrderRequest(order_id=order_id, until="COMPLETED", timeout_seconds=0.2), metadata=me
    )
    assert late.outcome == "timeout" and late.order.status == "PAID"
    await shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=order_id), metadata=me)
    never = await shop.orders.WaitOrder(
        pb.WaitOrderRequest(order_id=order_id, until="COMPLETED", timeout_seconds=5), metadata=me
    )
    assert never.outcome == "unreachable" and never.order.status == "CANCELLED"


async def test_watch_streams_every_change_until_final(shop: Shop) -> None:
    _, me = await shop.customer("ada@example.com")
    placed = await shop.orders.CreateOrder(create_request(("p-1", 1)), metadata=me)
    order_id = placed.order_id
    seen: list[str] = []

    async def follow() -> None:
        stream = shop.orders.WatchOrder(pb.WatchOrderRequest(order_id=order_id), metadata=me)
        async for order in stream:
            seen.append(order.status)

    following = asyncio.ensure_future(follow())
    await eventually(lambda: seen == ["CREATED"])
    await shop.tell(PaymentCompleted(paymentId="pay-1", orderId=order_id, status="CAPTURED"))
    await eventually(lambda: seen[-1:] == ["PAID"])
    await shop.orders.CancelOrder(pb.CancelOrderRequest(order_id=order_id), metadata=me)
    await asyncio.wait_for(following, 5)
    assert seen == ["CREATED", "PAID", "CANCELLED"]


async def test_an_unanswered_step_times_out_and_cancels(tmp_path: Path) -> None:
    async for shop in start_shop(tmp_path, order_payment_timeout=0.3):
        await shop.tell(checkout("o-1"))
        await shop.tell(RESERVED)
        cancelled = await eventually(partial(shop.published, "OrderCancelled"), timeout=5)
        assert cancelled[0].previousStatus == "CREATED"
        assert cancelled[0].reason == "timed out waiting for the payment"


async def news_in_one_batch_read_their_orders_at_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of participants' news for several orders: the orders are read (and, on
    PostgreSQL, locked) in one statement, and every step is taken as one by one."""
    ids = ["o-b1", "o-b2", "o-b3"]
    for order_id in ids:
        await shop.tell(checkout(order_id))
    await eventually(lambda: all_placed(shop, ids))
    singles: list[str] = []
    batches: list[list[str]] = []
    one, many = store.load, store.load_locked

    async def load(conn: Any, order_id: str, **kw: Any) -> Any:
        singles.append(order_id)
        return await one(conn, order_id, **kw)

    async def load_locked(conn: Any, order_ids: Any) -> Any:
        batches.append(sorted(order_ids))
        return await many(conn, order_ids)

    monkeypatch.setattr(store, "load", load)
    monkeypatch.setattr(store, "load_locked", load_locked)
    news: list[Payload] = [
        *(StockReserved(orderId=i, items=[Item(productId="p-1", quantity=2)]) for i in ids),
        *(PaymentCompleted(paymentId=f"pay-{i}", orderId=i, status="OK") for i in ids),
    ]
    batch = []
    for payload in news:
        event = envelope_of(payload)
        headers, body = event.to_binary(AMQP_PREFIX)
        batch.append(RawMessage(topic_of(event), headers, body, AMQP_PREFIX))
    consumer = shop.system.hosts["order"].consumer
    assert consumer is not None
    assert await consumer(batch) == [None] * len(batch)
    assert batches == [ids] and singles == []
    async with shop.ctx.db.connect() as conn:
        for order_id in ids:
            stored = await one(conn, order_id)
            assert stored is not None and stored.version == 3
            assert stored.order.paid and stored.order.reserved


async def all_placed(shop: Shop, ids: list[str]) -> bool:
    async with shop.ctx.db.connect() as conn:
        return all([await store.load(conn, i) is not None for i in ids])


async def test_news_in_one_batch_read_their_orders_at_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    await news_in_one_batch_read_their_orders_at_once(shop, monkeypatch)
