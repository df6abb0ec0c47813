"""The WDM compatibility API, orders half (``/orders/*``; see ``gateway/wdm.py``).

A WDM order is put together before checkout, which Mercato's orders are not: until then it is a
draft in the order service (no events, in no order list). Checkout places it as an ordinary order
with the same id — paid from the user's wallet, into the saga as every other order — and waits for
the settled outcome: 200 once paid and reserved, 400 once cancelled (not enough credit or stock)
with its compensation done — the credit refunded and the stock released, so that whatever the
client reads next agrees with the 400 —, 504 if neither came in time (the order goes on; a retried
checkout answers its outcome then). A checkout retried never makes a second order or charge:
placing a placed draft answers the order it made.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path

from mercato.api.common.v1 import common_pb2
from mercato.api.order.v1 import order_pb2 as pb
from mercato.api.order.v1.order_pb2_grpc import OrdersStub
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.wdm import Wdm, wdm_id

router = APIRouter(prefix="/orders", tags=["wdm"], responses=PROBLEM_RESPONSES)

CHECKOUT_WAIT = 30.0  # seconds a checkout waits for the saga's outcome
BULK = 5_000  # drafts per CreateDrafts call (the order service takes at most 10 000)
# WDM orders carry no address, but shipping needs one: every WDM order goes to this one.
PLACEHOLDER_ADDRESS = pb.Address(
    name="WDM benchmark", line1="1 Placeholder Street", city="Nowhere", postal_code="00000",
    country="ZZ",
)  # fmt: skip

Raw = Annotated[str, Path(min_length=1, max_length=200)]


def _number(amount: str) -> int | float:
    """An amount as WDM clients read it: an int when whole."""
    value = Decimal(amount or "0")
    return int(value) if value == value.to_integral_value() else float(value)


@router.post("/create/{user_id}", summary="WDM: a new empty order for the user (not yet placed)")
async def create_order(user_id: Raw, wdm: Wdm) -> dict[str, str]:
    request = pb.CreateDraftRequest(user_id=wdm_id("user", user_id))
    draft = await wdm.call("order", OrdersStub, "CreateDraft", request)
    return {"order_id": draft.order_id}


@router.post(
    "/addItem/{order_id}/{item_id}/{quantity}",
    summary="WDM: add an item at its current price (quantities of the same item add up)",
)
async def add_item(
    order_id: Raw, item_id: Raw, quantity: Annotated[int, Path(ge=1, le=10_000)], wdm: Wdm
) -> dict[str, Any]:
    request = pb.AddDraftItemRequest(
        order_id=wdm_id("order", order_id), product_id=wdm_id("item", item_id), quantity=quantity
    )
    draft = await wdm.call("order", OrdersStub, "AddDraftItem", request)
    return {"order_id": order_id, "item_id": item_id, "total_cost": _number(draft.total.amount)}


@router.post("/checkout/{order_id}", summary="WDM: place the order and wait for its outcome")
async def checkout(order_id: Raw, wdm: Wdm) -> dict[str, str]:
    place = pb.PlaceDraftRequest(
        order_id=wdm_id("order", order_id),
        payment=pb.PaymentMethod(method="wallet"),
        shipping_address=PLACEHOLDER_ADDRESS,
    )
    order = await wdm.call("order", OrdersStub, "PlaceDraft", place)
    if not order.settled:
        wait = pb.WaitOrderRequest(
            order_id=order.order_id, until="settled", timeout_seconds=CHECKOUT_WAIT
        )
        reply = await wdm.call("order", OrdersStub, "WaitOrder", wait, timeout=CHECKOUT_WAIT + 5)
        order = reply.order
    if not order.settled:
        raise Problem(
            504,
            f"no settled outcome yet (the order is {order.status}, waiting for "
            f"{', '.join(order.pending)}); retry the checkout to learn it",
            headers={"Retry-After": "1"},
        )
    if order.status == "CANCELLED":
        raise Problem(400, f"checkout failed: {order.cancel_reason or 'the order was cancelled'}")
    return {"order_id": order_id, "status": order.status}


@router.get("/find/{order_id}", summary="WDM: the order, whether placed or not")
async def find_order(order_id: Raw, wdm: Wdm) -> dict[str, Any]:
    request = pb.GetDraftRequest(order_id=wdm_id("order", order_id))
    draft = await wdm.call("order", OrdersStub, "GetDraft", request)
    payment = draft.order.payment
    return {
        "order_id": order_id,
        "paid": draft.placed and payment.paid and not payment.refunded,
        "items": [[item.product_id, item.quantity] for item in draft.items],
        "user_id": draft.user_id,
        "total_cost": _number(draft.total.amount),
    }


@router.post(
    "/batch_init/{n}/{n_items}/{n_users}/{item_price}",
    summary="WDM: orders 0..n-1, each for a random user with two random items",
)
async def batch_init(
    n: Annotated[int, Path(ge=1, le=100_000)],
    n_items: Annotated[int, Path(ge=1, le=1_000_000)],
    n_users: Annotated[int, Path(ge=1, le=1_000_000)],
    item_price: Annotated[Decimal, Path(ge=0, le=1_000_000, decimal_places=2)],
    wdm: Wdm,
) -> dict[str, Any]:
    # As WDM's own batch_init: the users and items are not checked here (their own
    # batch_init routes make them); an order naming one that is missing fails at checkout.
    price = common_pb2.Money(amount=str(item_price), currency="USD")

    def drafted(i: int) -> pb.DraftSpec:
        items = [
            pb.DraftItem(
                product_id=wdm_id("item", str(random.randrange(n_items))), quantity=1, price=price
            )
            for _ in range(2)
        ]
        user_id = wdm_id("user", str(random.randrange(n_users)))
        return pb.DraftSpec(order_id=wdm_id("order", str(i)), user_id=user_id, items=items)

    written = kept = 0
    for start in range(0, n, BULK):
        chunk = [drafted(i) for i in range(start, min(n, start + BULK))]
        request = pb.CreateDraftsRequest(drafts=chunk)
        reply = await wdm.call("order", OrdersStub, "CreateDrafts", request, timeout=60)
        written, kept = written + reply.written, kept + reply.kept
    return {"msg": "Batch init for orders successful", "written": written, "kept": kept}
