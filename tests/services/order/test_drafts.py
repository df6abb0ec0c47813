"""Drafts (the WDM API's orders before checkout) in order embedded: put together item by item,
placed once as an ordinary order, made in bulk by an admin; never an order before that."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from mercato.api.common.v1 import common_pb2
from mercato.api.order.v1 import order_pb2 as pb
from tests.services.order.conftest import ADMIN, Shop


def money(amount: str) -> common_pb2.Money:
    return common_pb2.Money(amount=amount, currency="USD")


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    return failed.value.code()


async def test_a_draft_adds_up_its_items_and_is_no_order_until_placed(shop: Shop) -> None:
    user_id, me = await shop.customer("ann@example.com")
    draft = await shop.orders.CreateDraft(pb.CreateDraftRequest(), metadata=me)
    assert draft.user_id == user_id and not draft.placed and draft.total == money("0")
    for product_id, quantity in (("p-1", 2), ("p-2", 1), ("p-1", 1)):
        request = pb.AddDraftItemRequest(
            order_id=draft.order_id, product_id=product_id, quantity=quantity
        )
        await shop.orders.AddDraftItem(request, metadata=me)
    got = await shop.orders.GetDraft(pb.GetDraftRequest(order_id=draft.order_id), metadata=me)
    assert [(i.product_id, i.quantity, i.price.amount) for i in got.items] == [
        ("p-1", 3, "10"),
        ("p-2", 1, "5.25"),
    ]
    assert got.total == money("35.25") and not got.HasField("order")
    assert (await shop.orders.ListOrders(pb.ListOrdersRequest(), metadata=me)).orders == []
    assert await shop.published() == []


async def test_bad_additions_are_refused_and_change_nothing(shop: Shop) -> None:
    _, me = await shop.customer("ann@example.com")
    _, other = await shop.customer("bob@example.com")
    draft = await shop.orders.CreateDraft(pb.CreateDraftRequest(), metadata=me)

    def add(order_id: str, product_id: str, quantity: int, who: object = me) -> object:
        request = pb.AddDraftItemRequest(
            order_id=order_id, product_id=product_id, quantity=quantity
        )
        return shop.orders.AddDraftItem(request, metadata=who)

    assert await code_of(add(draft.order_id, "nope", 1)) is grpc.StatusCode.NOT_FOUND
    assert await code_of(add("no-such-order", "p-1", 1)) is grpc.StatusCode.NOT_FOUND
    assert await code_of(add(draft.order_id, "p-1", 1, other)) is grpc.StatusCode.NOT_FOUND
    for quantity in (0, -1, 10_001):
        bad = add(draft.order_id, "p-1", quantity)
        assert await code_of(bad) is grpc.StatusCode.INVALID_ARGUMENT
    for_someone = shop.orders.CreateDraft(pb.CreateDraftRequest(user_id="x"), metadata=me)
    assert await code_of(for_someone) is grpc.StatusCode.PERMISSION_DENIED
    got = await shop.orders.GetDraft(pb.GetDraftRequest(order_id=draft.order_id), metadata=me)
    assert list(got.items) == []


async def test_placing_makes_one_order_however_often_it_is_asked(shop: Shop) -> None:
    admin = await shop.sign_in(*ADMIN)
    draft = await shop.orders.CreateDraft(pb.CreateDraftRequest(user_id="u-7"), metadata=admin)
    add = pb.AddDraftItemRequest(order_id=draft.order_id, product_id="p-3", quantity=2)
    await shop.orders.AddDraftItem(add, metadata=admin)
    place = pb.PlaceDraftRequest(order_id=draft.order_id)
    placed = await asyncio.gather(
        *(shop.orders.PlaceDraft(place, metadata=admin) for _ in range(3))
    )
    assert {p.order_id for p in placed} == {draft.order_id}
    assert {p.created_at for p in placed} == {placed[0].created_at}
    assert placed[0].user_id == "u-7" and placed[0].total == money("199.98")
    assert placed[0].payment.method == "wallet" and placed[0].status == "CREATED"
    (created,) = await shop.published("OrderCreated")
    assert created.orderId == draft.order_id and created.userId == "u-7"
    assert await code_of(shop.orders.AddDraftItem(add, metadata=admin)) is (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    got = await shop.orders.GetDraft(pb.GetDraftRequest(order_id=draft.order_id), metadata=admin)
    assert got.placed and got.order.status == "CREATED" and got.total == money("199.98")
    listed = await shop.orders.ListOrders(pb.ListOrdersRequest(), metadata=admin)
    assert [o.order_id for o in listed.orders] == [draft.order_id]


async def test_an_empty_draft_cannot_be_placed(shop: Shop) -> None:
    _, me = await shop.customer("ann@example.com")
    draft = await shop.orders.CreateDraft(pb.CreateDraftRequest(), metadata=me)
    place = shop.orders.PlaceDraft(pb.PlaceDraftRequest(order_id=draft.order_id), metadata=me)
    assert await code_of(place) is grpc.StatusCode.FAILED_PRECONDITION
    assert await shop.published() == []


def spec(order_id: str, *items: tuple[str, int, str]) -> pb.DraftSpec:
    return pb.DraftSpec(
        order_id=order_id,
        user_id="u-1",
        items=[pb.DraftItem(product_id=p, quantity=q, price=money(a)) for p, q, a in items],
    )


async def test_drafts_in_bulk_replace_unplaced_ones_and_keep_placed_ones(shop: Shop) -> None:
    admin = await shop.sign_in(*ADMIN)
    first = pb.CreateDraftsRequest(
        drafts=[spec(f"d-{i}", ("x-1", 1, "7"), ("x-1", 1, "7")) for i in range(1200)]
    )
    assert (await shop.orders.CreateDrafts(first, metadata=admin)).written == 1200
    d0 = await shop.orders.GetDraft(pb.GetDraftRequest(order_id="d-0"), metadata=admin)
    assert [(i.product_id, i.quantity) for i in d0.items] == [("x-1", 2)]
    assert d0.total == money("14")
    await shop.orders.PlaceDraft(pb.PlaceDraftRequest(order_id="d-0"), metadata=admin)
    again = pb.CreateDraftsRequest(drafts=[spec("d-0", ("x-2", 1, "1")), spec("d-1")])
    reply = await shop.orders.CreateDrafts(again, metadata=admin)
    assert (reply.written, reply.kept) == (1, 1)
    d0 = await shop.orders.GetDraft(pb.GetDraftRequest(order_id="d-0"), metadata=admin)
    d1 = await shop.orders.GetDraft(pb.GetDraftRequest(order_id="d-1"), metadata=admin)
    assert d0.placed and d0.total == money("14") and list(d1.items) == []
    assert len(await shop.published("OrderCreated")) == 1

    _, me = await shop.customer("ann@example.com")
    denied = shop.orders.CreateDrafts(pb.CreateDraftsRequest(drafts=[spec("d-9")]), metadata=me)
    assert await code_of(denied) is grpc.StatusCode.PERMISSION_DENIED
    twice = pb.CreateDraftsRequest(drafts=[spec("d-9"), spec("d-9")])
    assert await code_of(shop.orders.CreateDrafts(twice, metadata=admin)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    bad_price = pb.CreateDraftsRequest(drafts=[spec("d-9", ("x-1", 1, "lots"))])
    assert await code_of(shop.orders.CreateDrafts(bad_price, metadata=admin)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_an_order_placed_without_a_draft_reads_as_a_placed_draft(shop: Shop) -> None:
    _, me = await shop.customer("ann@example.com")
    order = await shop.orders.CreateOrder(
        pb.CreateOrderRequest(items=[pb.ItemRequest(product_id="p-2", quantity=2)]), metadata=me
    )
    got = await shop.orders.GetDraft(pb.GetDraftRequest(order_id=order.order_id), metadata=me)
    assert got.placed and got.total == money("10.5") and got.order.order_id == order.order_id
