"""Waiting for an order that is not there yet: a checkout's order is made from its event a
moment after the cart answered, so the shopper's wait (or stream) often comes first."""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
import pytest

from mercato.api.order.v1 import order_pb2 as pb
from mercato.contracts.events import PaymentCompleted
from mercato.platform.ids import new_id
from mercato.services.order import grpc_api
from tests.services.order.conftest import Shop
from tests.services.order.test_order_service import checkout


def wait_for(order_id: str, timeout: float, until: str = "PAID") -> pb.WaitOrderRequest:
    return pb.WaitOrderRequest(order_id=order_id, until=until, timeout_seconds=timeout)


async def not_found(call: object) -> float:
    """Seconds until the call failed with NOT_FOUND."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    return time.monotonic() - started


async def test_a_wait_started_before_the_order_is_placed_answers_once_it_is(shop: Shop) -> None:
    # Ids as a checkout gives them out (UUIDv7, made just now): only such an id may
    # name an order still on its way.
    oid = new_id()
    user_id, me = await shop.customer("ada@example.com")
    waiting = asyncio.ensure_future(shop.orders.WaitOrder(wait_for(oid, 10), metadata=me))
    seen: list[str] = []

    async def follow() -> None:
        stream = shop.orders.WatchOrder(pb.WatchOrderRequest(order_id=oid), metadata=me)
        async for order in stream:
            seen.append(order.status)
            if order.status == "PAID":
                return

    following = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)
    assert not waiting.done() and not following.done()
    await shop.tell(checkout(oid, user_id))
    await shop.tell(PaymentCompleted(paymentId="pay-1", orderId=oid, status="CAPTURED"))
    answer = await asyncio.wait_for(waiting, 5)
    assert answer.outcome == "reached" and answer.order.status == "PAID"
    assert [c.to_status for c in answer.order.history] == ["CREATED", "PAID"]
    await asyncio.wait_for(following, 5)
    assert seen[0] == "CREATED" and seen[-1] == "PAID"


async def test_a_wait_answers_as_soon_as_the_order_appears_if_that_is_all_there_is(
    shop: Shop,
) -> None:
    oid = new_id()
    user_id, me = await shop.customer("ada@example.com")
    waiting = asyncio.ensure_future(shop.orders.WaitOrder(wait_for(oid, 0.5), metadata=me))
    await asyncio.sleep(0.1)
    await shop.tell(checkout(oid, user_id))
    answer = await asyncio.wait_for(waiting, 5)
    assert answer.outcome == "timeout" and answer.order.status == "CREATED"


async def test_someone_elses_order_is_not_found_at_once_or_when_it_appears(shop: Shop) -> None:
    oid = new_id()
    ada_id, _ = await shop.customer("ada@example.com")
    _, bo = await shop.customer("bo@example.com")
    early = asyncio.ensure_future(not_found(shop.orders.WaitOrder(wait_for(oid, 10), metadata=bo)))
    await asyncio.sleep(0.2)
    await shop.tell(checkout(oid, ada_id))
    assert await asyncio.wait_for(early, 5) < 5
    assert await not_found(shop.orders.WaitOrder(wait_for(oid, 10), metadata=bo)) < 2
    stream = shop.orders.WatchOrder(pb.WatchOrderRequest(order_id=oid), metadata=bo)
    assert await not_found(stream.read()) < 1


async def test_an_order_that_never_appears_is_not_found_after_the_timeout(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    never_id = new_id()
    _, me = await shop.customer("ada@example.com")
    assert await not_found(shop.orders.WaitOrder(wait_for(never_id, 0), metadata=me)) < 0.5
    took = await not_found(shop.orders.WaitOrder(wait_for(never_id, 0.4), metadata=me))
    assert 0.35 < took < 2
    monkeypatch.setattr(grpc_api, "APPEAR", 0.3)
    stream = shop.orders.WatchOrder(pb.WatchOrderRequest(order_id=never_id), metadata=me)
    assert 0.25 < await not_found(stream.read()) < 2


async def test_an_id_no_checkout_gave_out_lately_is_not_found_at_once(shop: Shop) -> None:
    _, me = await shop.customer("ada@example.com")
    stale = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # a UUIDv7 of July 2024
    for order_id in ("o-1", "0", stale, "f47ac10b-58cc-4372-a567-0e02b2c3d479"):
        assert await not_found(shop.orders.WaitOrder(wait_for(order_id, 10), metadata=me)) < 1
        stream = shop.orders.WatchOrder(pb.WatchOrderRequest(order_id=order_id), metadata=me)
        assert await not_found(stream.read()) < 1
