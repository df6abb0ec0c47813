"""cart on its own: items priced by the catalog, kept current by its events, checked out once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import grpc.aio
import pytest

from mercato.api.cart.v1 import cart_pb2 as pb
from mercato.contracts.events import CartCheckedOut, ProductDeleted, ProductUpdated
from tests.conftest import eventually
from tests.services.cart.conftest import CartRig, Product, start_cart

ADA, BO = "user-ada", "user-bo"
CARD = pb.PaymentMethod(method="card", token="tok_1", last4="4242")
ADDRESS = pb.Address(
    name="Ada Lovelace", line1="1 Analytical Row", city="London", postal_code="N1", country="GB"
)


def stock(rig: CartRig) -> None:
    rig.catalog.products["mug"] = Product("Mug", "9.50")
    rig.catalog.products["tea"] = Product("Tea", "4.25")


async def refused(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


async def test_adding_prices_the_item_from_the_catalog(rig: CartRig) -> None:
    stock(rig)
    view = await rig.add(ADA, "mug", 2)
    assert [(x.product_id, x.name, x.quantity, x.price.amount) for x in view.items] == [
        ("mug", "Mug", 2, "9.50")
    ]
    assert (view.total.amount, view.total.currency, view.item_count) == ("19.00", "USD", 2)
    view = await rig.add(ADA, "mug", 1)
    view = await rig.add(ADA, "tea", 2)
    assert [(x.product_id, x.quantity) for x in view.items] == [("mug", 3), ("tea", 2)]
    assert view.total.amount == "37.00" and view.items[0].line_total.amount == "28.50"
    added = [e.data for e in await rig.events("CartItemAdded")]
    assert added == [
        {"userId": ADA, "productId": "mug", "quantity": 2},
        {"userId": ADA, "productId": "mug", "quantity": 1},
        {"userId": ADA, "productId": "tea", "quantity": 2},
    ]
    last = (await rig.events("CartUpdated"))[-1].data
    assert last["cartId"] == view.cart_id and last["total"] == 37.0
    assert last["items"] == [
        {"productId": "mug", "quantity": 3, "price": 9.5},
        {"productId": "tea", "quantity": 2, "price": 4.25},
    ]


async def test_bad_items_are_refused_and_leave_no_cart(rig: CartRig) -> None:
    stock(rig)
    rig.catalog.products["gone"] = Product("Gone", "1.00", state="deleted")
    await refused(rig.add(ADA, "nope"), grpc.StatusCode.NOT_FOUND)
    await refused(rig.add(ADA, "gone"), grpc.StatusCode.FAILED_PRECONDITION)
    for quantity in (0, -3, 1001, 2**40):
        await refused(rig.add(ADA, "mug", quantity), grpc.StatusCode.INVALID_ARGUMENT)
    await refused(rig.add(ADA, ""), grpc.StatusCode.INVALID_ARGUMENT)
    view = await rig.view(ADA)
    assert view.cart_id == "" and not view.items and view.total.amount == "0.00"
    assert await rig.events() == []


async def test_a_line_holds_at_most_a_thousand(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 999)
    await refused(rig.add(ADA, "mug", 2), grpc.StatusCode.INVALID_ARGUMENT)
    assert (await rig.view(ADA)).items[0].quantity == 999


async def test_one_cart_one_currency(rig: CartRig) -> None:
    stock(rig)
    rig.catalog.products["stollen"] = Product("Stollen", "12.00", currency="EUR")
    await rig.add(ADA, "mug")
    detail = await refused(rig.add(ADA, "stollen"), grpc.StatusCode.FAILED_PRECONDITION)
    assert "EUR" in detail


async def test_the_catalog_being_down_is_unavailable_not_a_crash(rig: CartRig) -> None:
    stock(rig)
    rig.catalog.down = True
    await refused(rig.add(ADA, "mug"), grpc.StatusCode.UNAVAILABLE)


async def test_changing_and_removing_items(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 1)
    await rig.add(ADA, "tea", 1)
    me = rig.token(ADA)
    view = await rig.stub.UpdateItem(
        pb.UpdateItemRequest(product_id="tea", quantity=5), metadata=me
    )
    assert [(x.product_id, x.quantity) for x in view.items] == [("mug", 1), ("tea", 5)]
    await refused(
        rig.stub.UpdateItem(pb.UpdateItemRequest(product_id="tea", quantity=0), metadata=me),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await refused(
        rig.stub.UpdateItem(pb.UpdateItemRequest(product_id="cup", quantity=1), metadata=me),
        grpc.StatusCode.NOT_FOUND,
    )
    view = await rig.stub.RemoveItem(pb.RemoveItemRequest(product_id="mug"), metadata=me)
    assert [x.product_id for x in view.items] == ["tea"] and view.total.amount == "21.25"
    await refused(
        rig.stub.RemoveItem(pb.RemoveItemRequest(product_id="mug"), metadata=me),
        grpc.StatusCode.NOT_FOUND,
    )
    assert [e.data for e in await rig.events("CartItemRemoved")] == [
        {"userId": ADA, "productId": "mug"}
    ]


async def test_a_new_price_reaches_every_cart_and_an_older_one_does_not(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 2)
    await rig.add(BO, "mug", 1)
    await rig.add(BO, "tea", 1)
    now = datetime.now(UTC)
    await rig.feed(ProductUpdated(productId="mug", price=Decimal("11.00")), time=now)
    assert (await rig.view(ADA)).total.amount == "22.00"
    assert (await rig.view(BO)).total.amount == "15.25"
    # A stale update delivered late (an earlier price) changes nothing.
    await rig.feed(ProductUpdated(productId="mug", price=Decimal("8.00")), time=now - timedelta(1))
    assert (await rig.view(ADA)).items[0].price.amount == "11.00"
    updated = [e.data for e in await rig.events("CartUpdated") if e.data["userId"] == ADA]
    assert updated[-1]["total"] == 22.0
    # A later add of the same product keeps the newest price cart has heard of.
    view = await rig.add(ADA, "mug", 1)
    assert view.items[0].price.amount == "11.00" and view.total.amount == "33.00"


async def test_a_deleted_product_leaves_every_cart_for_good(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 2)
    await rig.add(ADA, "tea", 1)
    await rig.add(BO, "mug", 1)
    await rig.feed(ProductDeleted(productId="mug"))
    assert [x.product_id for x in (await rig.view(ADA)).items] == ["tea"]
    assert not (await rig.view(BO)).items
    removed = sorted(e.data["userId"] for e in await rig.events("CartItemRemoved"))
    assert removed == [ADA, BO]
    # The catalog's answer may lag its event: cart still refuses the deleted product.
    await refused(rig.add(ADA, "mug"), grpc.StatusCode.FAILED_PRECONDITION)
    # ...and an update delivered after the deletion does not bring it back.
    await rig.feed(ProductUpdated(productId="mug", price=Decimal("1.00")))
    assert [x.product_id for x in (await rig.view(ADA)).items] == ["tea"]


async def test_checkout_publishes_the_order_and_empties_the_cart(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 2)
    await rig.add(ADA, "tea", 3)
    cart_id = (await rig.view(ADA)).cart_id
    rig.catalog.products["tea"].price = "4.75"  # the catalog knows better than the cart
    request = pb.CheckoutRequest(payment=CARD, shipping_address=ADDRESS)
    reply = await rig.stub.Checkout(request, metadata=rig.token(ADA))
    [event] = await rig.events("CartCheckedOut")
    assert event.subject == cart_id and event.correlationid == reply.order_id
    checked_out = CartCheckedOut.model_validate(event.data)
    assert checked_out.orderId == reply.order_id and checked_out.cartId == cart_id
    assert [(x.productId, x.quantity, x.price) for x in checked_out.items] == [
        ("mug", 2, Decimal("9.5")),
        ("tea", 3, Decimal("4.75")),
    ]
    assert checked_out.payment is not None and checked_out.payment.last4 == "4242"
    assert event.data["payment"] == {"method": "card", "token": "tok_1", "last4": "4242"}
    assert event.data["shippingAddress"]["postalCode"] == "N1"
    assert checked_out.currency == "USD" and checked_out.userId == ADA
    after = await rig.view(ADA)
    assert not after.items and after.cart_id == ""
    # The next item starts a new cart.
    assert (await rig.add(ADA, "tea")).cart_id not in ("", cart_id)


async def test_a_retried_checkout_makes_one_order(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug")
    me = [*rig.token(ADA), ("idempotency-key", "checkout-1")]
    request = pb.CheckoutRequest(payment=CARD, shipping_address=ADDRESS)
    first = await rig.stub.Checkout(request, metadata=me)
    # The gateway mints a new card token per request: a retry still is the same request.
    again = pb.CheckoutRequest(payment=pb.PaymentMethod(method="card", token="tok_2", last4="4242"))
    again.shipping_address.CopyFrom(ADDRESS)
    assert (await rig.stub.Checkout(again, metadata=me)).order_id == first.order_id
    assert len(await rig.events("CartCheckedOut")) == 1
    # Another body under the same key is refused; without a key an empty cart is refused.
    wallet = pb.CheckoutRequest(payment=pb.PaymentMethod(method="wallet"), shipping_address=ADDRESS)
    await refused(rig.stub.Checkout(wallet, metadata=me), grpc.StatusCode.INVALID_ARGUMENT)
    detail = await refused(
        rig.stub.Checkout(request, metadata=rig.token(ADA)), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "empty" in detail


async def test_concurrent_checkouts_with_one_key_make_one_order(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug")
    me = [*rig.token(ADA), ("idempotency-key", "double-click")]
    request = pb.CheckoutRequest(payment=CARD, shipping_address=ADDRESS)
    replies = await asyncio.gather(
        *(rig.stub.Checkout(request, metadata=me) for _ in range(4)), return_exceptions=True
    )
    ids = {r.order_id for r in replies if isinstance(r, pb.CheckoutReply)}
    assert len(ids) == 1, replies
    assert len(await rig.events("CartCheckedOut")) == 1


async def test_checkout_refuses_what_can_no_longer_be_sold(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug")
    rig.catalog.products["mug"].state = "deleted"
    request = pb.CheckoutRequest(payment=CARD, shipping_address=ADDRESS)
    detail = await refused(
        rig.stub.Checkout(request, metadata=rig.token(ADA)), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "mug" in detail
    assert await rig.events("CartCheckedOut") == []
    assert len((await rig.view(ADA)).items) == 1


@pytest.mark.parametrize(
    "payment",
    [
        pb.PaymentMethod(method="card", token="tok_1"),
        pb.PaymentMethod(method="card", last4="4242"),
        pb.PaymentMethod(method="card", token="tok_1", last4="42a2"),
        pb.PaymentMethod(method="wallet", token="tok_1"),
        pb.PaymentMethod(method="cash"),
    ],
)
async def test_checkout_refuses_a_bad_payment(rig: CartRig, payment: pb.PaymentMethod) -> None:
    stock(rig)
    await rig.add(ADA, "mug")
    request = pb.CheckoutRequest(payment=payment, shipping_address=ADDRESS)
    await refused(
        rig.stub.Checkout(request, metadata=rig.token(ADA)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert len((await rig.view(ADA)).items) == 1


async def test_a_customer_reaches_only_their_own_cart(rig: CartRig) -> None:
    stock(rig)
    await rig.add(ADA, "mug", 2)
    bo = rig.token(BO)
    await refused(
        rig.stub.GetCart(pb.GetCartRequest(user_id=ADA), metadata=bo),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await refused(
        rig.stub.RemoveItem(pb.RemoveItemRequest(user_id=ADA, product_id="mug"), metadata=bo),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await refused(
        rig.stub.Checkout(pb.CheckoutRequest(user_id=ADA, payment=CARD), metadata=bo),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await refused(rig.stub.GetCart(pb.GetCartRequest()), grpc.StatusCode.UNAUTHENTICATED)
    assert not (await rig.view(BO)).items
    admin = rig.token("root", ("admin",))
    assert (await rig.stub.GetCart(pb.GetCartRequest(user_id=ADA), metadata=admin)).item_count == 2


@pytest.fixture
async def idle_rig(tmp_path: Path) -> AsyncIterator[CartRig]:
    async for running in start_cart(tmp_path, cart_abandon_after=0.3):
        yield running


async def test_an_idle_cart_is_abandoned_once_per_idle_spell(idle_rig: CartRig) -> None:
    rig = idle_rig
    stock(rig)
    await rig.add(ADA, "mug")
    await rig.view(BO)  # no cart, nothing to abandon
    found = await eventually(lambda: rig.events("CartAbandoned"), timeout=5)
    cart_id = (await rig.view(ADA)).cart_id
    assert [e.data for e in found] == [{"userId": ADA, "cartId": cart_id}]
    await asyncio.sleep(0.5)
    assert len(await rig.events("CartAbandoned")) == 1
    await rig.add(ADA, "tea")  # touched: a new idle spell begins
    await eventually(lambda: _count(rig, "CartAbandoned", 2), timeout=5)


async def _count(rig: CartRig, event_type: str, n: int) -> bool:
    return len(await rig.events(event_type)) >= n


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


@pytest.fixture
async def any_db_rig(database_url: str | None, tmp_path: Path) -> AsyncIterator[CartRig]:
    async for running in start_cart(tmp_path, database_url=database_url):
        yield running


async def test_concurrent_adds_share_one_cart_and_lose_nothing(any_db_rig: CartRig) -> None:
    rig = any_db_rig
    stock(rig)
    await asyncio.gather(*(rig.add(ADA, "mug", 1) for _ in range(12)))
    await asyncio.gather(*(rig.add(BO, "tea", 2) for _ in range(3)))
    view = await rig.view(ADA)
    assert [(x.product_id, x.quantity) for x in view.items] == [("mug", 12)]
    assert (await rig.view(BO)).items[0].quantity == 6
    assert (
        len({e.subject for e in await rig.events("CartItemAdded") if e.data["userId"] == ADA}) == 1
    )


async def test_concurrent_adds_of_different_products_each_see_the_ones_before(
    any_db_rig: CartRig,
) -> None:
    rig = any_db_rig
    names = [f"p{i}" for i in range(8)]
    for name in names:
        rig.catalog.products[name] = Product(name.upper(), "1.00")
    views = await asyncio.gather(*(rig.add(ADA, name, 1) for name in names))
    # One after another on the cart's lock: each answer holds the lines added before it.
    assert sorted(len(v.items) for v in views) == list(range(1, 9))
    assert len({v.cart_id for v in views}) == 1
    counts = [len(e.data["items"]) for e in await rig.events("CartUpdated")]
    assert counts == list(range(1, 9))
    view = await rig.view(ADA)
    assert sorted(x.product_id for x in view.items) == names and view.total.amount == "8.00"


async def test_a_cart_is_changed_and_checked_out_the_same_on_every_database(
    any_db_rig: CartRig,
) -> None:
    rig = any_db_rig
    stock(rig)
    me = rig.token(ADA)
    await rig.add(ADA, "mug", 1)
    await rig.add(ADA, "tea", 1)
    added = await rig.add(ADA, "mug", 2)
    assert [(x.product_id, x.quantity) for x in added.items] == [("mug", 3), ("tea", 1)]
    assert added == await rig.view(ADA)
    changed = await rig.stub.UpdateItem(
        pb.UpdateItemRequest(product_id="tea", quantity=4), metadata=me
    )
    assert changed == await rig.view(ADA) and changed.total.amount == "45.50"
    removed = await rig.stub.RemoveItem(pb.RemoveItemRequest(product_id="mug"), metadata=me)
    assert removed == await rig.view(ADA) and [x.product_id for x in removed.items] == ["tea"]
    request = pb.CheckoutRequest(payment=CARD, shipping_address=ADDRESS)
    keyed = [*me, ("idempotency-key", "k-1")]
    replies = await asyncio.gather(*(rig.stub.Checkout(request, metadata=keyed) for _ in range(3)))
    assert len({r.order_id for r in replies}) == 1
    [event] = await rig.events("CartCheckedOut")
    assert event.data["items"] == [{"productId": "tea", "quantity": 4, "price": 4.25}]
    assert event.subject == removed.cart_id
    assert (await rig.view(ADA)).cart_id == ""
    detail = await refused(
        rig.stub.Checkout(request, metadata=me), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "empty" in detail
