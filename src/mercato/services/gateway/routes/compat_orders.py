"""Compatibility routes for clients of ``seeds/003`` (its order service's REST API).

Its shapes: an order is ``{id, products: {option: [{id, name, price}]}, shippingTo,
cardParams, status}`` with one ``option`` entry per unit, and statuses CREATED, PAYED,
RESERVED, DELIVERED (handed to delivery — Mercato's DELIVERING — and COMPLETED), CANCELED.
``currentUserId`` may be given as there; the bearer token still decides who is asking (it must
be that user, or an admin). What differs, on purpose:

- prices come from the catalog, never from the request (a ``price`` sent is ignored);
- ``cardParams`` is ``"number; cvc; holder"`` as in the seed, optionally with ``; MM/YY`` (the
  seed has no expiry: without one the card is taken as valid to the end of next year). The
  card is tokenized at the payment service; answers show only its last four digits. Without
  ``cardParams`` the order is paid from the user's wallet;
- ``shippingTo`` (one line of text) becomes the shipping address's first line;
- the status answer carries ``settled`` as well (an addition): true once the outcome is final
  for money and stock (a CANCELED order's refund and stock release are done);
- an order ``id`` the client chooses is its user's: it is kept behind a prefix of the user's
  (``scoped_id``) and shown without it, so two users may choose the same id, and one cannot
  learn whether another's id exists nor take it first.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from mercato.api.order.v1 import order_pb2 as pb
from mercato.api.order.v1.order_pb2_grpc import OrdersStub
from mercato.platform.auth import Caller
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.routes.cart import CardPayment, payment_method
from mercato.services.gateway.security import CurrentCaller
from mercato.services.gateway.upstream import Upstream

router = APIRouter(
    prefix="/api/v1/orders",
    tags=["orders (seed 003 compatibility)"],
    responses=PROBLEM_RESPONSES,
)

# Mercato's statuses as the seed names them.
SEED_STATUS = {
    "CREATED": "CREATED",
    "PAID": "PAYED",
    "RESERVED": "RESERVED",
    "DELIVERING": "DELIVERED",
    "COMPLETED": "DELIVERED",
    "CANCELLED": "CANCELED",
}
MAX_UNITS = 1_000
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
UserId = Annotated[str | None, Query(max_length=200, description="Who asks (the token decides)")]
OrderQuery = Annotated[str, Query(min_length=1, max_length=200)]


class SeedProduct(Input):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=200)]
    name: str | None = None
    price: Any = Field(None, description="Ignored: the catalog's price applies")


class SeedProducts(Input):
    model_config = ConfigDict(extra="ignore")

    option: Annotated[list[SeedProduct], Field(min_length=1, max_length=MAX_UNITS)]


class SeedOrderIn(Input):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\-]{1,64}$")] | None = None
    products: SeedProducts
    shippingTo: Annotated[str, Field(max_length=200)] | None = None
    cardParams: Annotated[str, Field(max_length=200)] | None = None
    status: str | None = Field(None, description="Ignored: a new order is CREATED")


class SeedProductOut(BaseModel):
    id: str
    name: str
    price: Amount


class SeedProductsOut(BaseModel):
    option: list[SeedProductOut]


class SeedOrder(BaseModel):
    id: str
    products: SeedProductsOut
    shippingTo: str
    cardParams: str
    status: str


class SeedStatus(BaseModel):
    id: str
    status: str
    settled: bool


class SeedStatusChange(BaseModel):
    orderId: str
    status: str
    previousStatus: str | None
    reason: str | None
    time: str


def seed_order(reply: pb.Order) -> SeedOrder:
    units = [
        SeedProductOut(id=i.product_id, name=i.product_id, price=Decimal(i.price.amount))
        for i in reply.items
        for _ in range(i.quantity)
    ]
    last4 = reply.payment.last4
    return SeedOrder(
        id=reply.order_id.removeprefix(_scope(reply.user_id)),
        products=SeedProductsOut(option=units),
        shippingTo=reply.shipping_address.line1 if reply.HasField("shipping_address") else "",
        cardParams=f"**** **** **** {last4}" if last4 else "",
        status=SEED_STATUS[reply.status],
    )


def _scope(user_id: str) -> str:
    return "c" + hashlib.sha256(user_id.encode()).hexdigest()[:16] + ":"


def scoped_id(user_id: str, chosen: str) -> str:
    """The order id kept for the id ``chosen`` by ``user_id``'s client."""
    return _scope(user_id) + chosen


async def get_order(upstream: Upstream, user_id: str, given: str) -> pb.Order:
    """The order the client names ``given``: one it chose the id of, else one of the ids
    Mercato made (another user's is not found either way)."""
    reply: pb.Order
    try:
        message = pb.GetOrderRequest(order_id=scoped_id(user_id, given))
        reply = await upstream.call("order", OrdersStub, "GetOrder", message)
    except Problem as problem:
        if problem.status != 404:
            raise
        message = pb.GetOrderRequest(order_id=given)
        reply = await upstream.call("order", OrdersStub, "GetOrder", message)
    return reply


def acting_for(caller: Caller, current_user_id: str | None) -> str:
    user_id = current_user_id or caller.user_id
    if not caller.may_act_for(user_id):
        raise Problem(403, "currentUserId is not you")
    return user_id


def card_of(params: str, holder_default: str) -> CardPayment:
    parts = [p.strip() for p in params.split(";")]
    if len(parts) not in (3, 4):
        raise Problem(422, "cardParams: 'number; cvc; holder' (optionally '; MM/YY')")
    number, cvc, holder = parts[:3]
    expiry = parts[3] if len(parts) == 4 else f"12/{datetime.now(UTC).year + 1}"
    try:
        return CardPayment(
            method="card",
            cardNumber=number,
            expiry=expiry,
            cvc=cvc,
            holder=holder or holder_default,
        )
    except ValidationError:
        # Never echo the input: it holds a card number.
        raise Problem(422, "cardParams: not a valid card") from None


@router.post("/create", summary="Create an order (seed 003)")
async def create(
    body: SeedOrderIn, caller: CurrentCaller, upstream: Upstream, currentUserId: UserId = None
) -> SeedOrder:
    user_id = acting_for(caller, currentUserId)
    units: dict[str, int] = {}
    for product in body.products.option:
        units[product.id] = units.get(product.id, 0) + 1
    message = pb.CreateOrderRequest(
        items=[pb.ItemRequest(product_id=p, quantity=q) for p, q in units.items()],
        order_id=scoped_id(user_id, body.id) if body.id else "",
        user_id=user_id if user_id != caller.user_id else "",
    )
    name = "customer"
    if body.cardParams and body.cardParams.strip():
        card = card_of(body.cardParams, holder_default=name)
        message.payment.CopyFrom(await payment_method(card, upstream, pb.PaymentMethod))
        name = card.holder
    if body.shippingTo and body.shippingTo.strip():
        message.shipping_address.CopyFrom(pb.Address(name=name, line1=body.shippingTo.strip()))
    return seed_order(await upstream.call("order", OrdersStub, "CreateOrder", message))


@router.post("/cancel", summary="Cancel an order (seed 003)")
async def cancel(
    caller: CurrentCaller, upstream: Upstream, orderID: OrderQuery, currentUserId: UserId = None
) -> SeedOrder:
    order_id = (await get_order(upstream, acting_for(caller, currentUserId), orderID)).order_id
    message = pb.CancelOrderRequest(order_id=order_id)
    return seed_order(await upstream.call("order", OrdersStub, "CancelOrder", message))


@router.get("/list", summary="My orders (seed 003)")
async def list_orders(
    caller: CurrentCaller, upstream: Upstream, currentUserId: UserId = None
) -> list[SeedOrder]:
    user_id = acting_for(caller, currentUserId)
    found: list[SeedOrder] = []
    page = 1
    while True:
        message = pb.ListOrdersRequest(user_id=user_id)
        message.page.page, message.page.page_size = page, 100
        reply = await upstream.call("order", OrdersStub, "ListOrders", message)
        found += [seed_order(o) for o in reply.orders]
        if len(found) >= reply.page.total or not reply.orders:
            return found
        page += 1


@router.get("/status", summary="An order's status (seed 003)")
async def status(id: OrderQuery, caller: CurrentCaller, upstream: Upstream) -> SeedStatus:
    reply = await get_order(upstream, caller.user_id, id)
    return SeedStatus(id=id, status=SEED_STATUS[reply.status], settled=reply.settled)


@router.get("/status_change_list", summary="An order's status changes, oldest first (seed 003)")
async def status_change_list(
    id: OrderQuery, caller: CurrentCaller, upstream: Upstream
) -> list[SeedStatusChange]:
    reply = await get_order(upstream, caller.user_id, id)
    changes: list[SeedStatusChange] = []
    for h in reply.history:
        status = SEED_STATUS[h.to_status]
        previous = changes[-1].status if changes else None
        if status == previous:
            continue  # DELIVERING then COMPLETED: one DELIVERED in the seed's words
        changes.append(
            SeedStatusChange(
                orderId=id,
                status=status,
                previousStatus=previous,
                reason=h.reason or None,
                time=h.at,
            )
        )
    return changes
