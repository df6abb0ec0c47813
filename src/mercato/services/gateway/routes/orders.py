"""Orders: place one, list mine (everyone's for an admin), read one with its history, payment
and shipments, cancel it, and follow it without polling (``wait`` long-polls, ``stream`` sends
server-sent events).

A card is checked at the door and exchanged for a token at the payment service, as at the
cart's checkout (the same body models); the order and its events carry only the token and the
last four digits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any, Literal

import grpc.aio
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, PlainSerializer

from mercato.api.order.v1 import order_pb2 as pb
from mercato.api.order.v1.order_pb2_grpc import OrdersStub
from mercato.api.shipping.v1 import shipping_pb2
from mercato.api.shipping.v1.shipping_pb2_grpc import ShippingStub
from mercato.platform.waits import within
from mercato.services.gateway.inputs import Count, Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.routes.cart import (
    CardPayment,
    ShippingAddress,
    WalletPayment,
    payment_method,
)
from mercato.services.gateway.routes.shipments import Shipment, shipment_of
from mercato.services.gateway.security import CurrentCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream, problem_of

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=PROBLEM_RESPONSES)

OrderId = Annotated[str, Path(min_length=1, max_length=200)]
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
Status = Literal["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED", "CANCELLED"]
MAX_ITEMS = 100
HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream


class NewItem(Input):
    productId: Annotated[str, Field(min_length=1, max_length=200)]
    quantity: Annotated[Count, Field(ge=1, le=10_000)]


class NewOrder(Input):
    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_ITEMS)]
    payment: Annotated[CardPayment | WalletPayment, Field(discriminator="method")]
    shippingAddress: ShippingAddress


class Cancellation(Input):
    reason: Annotated[str, Field(max_length=500)] | None = None


class OrderItem(BaseModel):
    productId: str
    quantity: int
    price: Amount = Field(description="Unit price when the order was placed")
    status: Literal["PENDING", "EXECUTED", "CANCELED"]


class StatusChange(BaseModel):
    at: str
    fromStatus: str | None
    toStatus: str
    reason: str | None


class Payment(BaseModel):
    method: str
    last4: str | None
    paymentId: str | None
    paid: bool
    refunded: bool


class Address(BaseModel):
    name: str
    line1: str
    line2: str | None
    city: str
    postalCode: str
    country: str


class Order(BaseModel):
    orderId: str
    userId: str
    status: Status
    items: list[OrderItem]
    total: Amount
    currency: str
    statusHistory: list[StatusChange] = Field(description="Empty in lists")
    payment: Payment
    shippingAddress: Address | None
    shipmentId: str | None
    shipment: Shipment | None = Field(None, description="The delivery (on GET of one order)")
    returnShipment: Shipment | None = Field(None, description="A return, if one was ordered")
    cancelReason: str | None
    settled: bool = Field(
        description="The outcome is final as far as money and stock go: paid and reserved "
        "(RESERVED and after), or CANCELLED with the refund and the stock release done"
    )
    pending: list[Literal["payment", "reservation", "refund", "stockRelease", "return"]] = Field(
        description="What the outcome still waits for; empty when settled"
    )
    createdAt: str
    updatedAt: str


class OrderPage(BaseModel):
    items: list[Order]
    page: int
    pageSize: int
    total: int


class WaitOutcome(BaseModel):
    outcome: Literal["reached", "unreachable", "timeout"] = Field(
        description="reached; unreachable: cancelled first; timeout: not yet"
    )
    order: Order


def order_of(reply: pb.Order) -> Order:
    a = reply.shipping_address if reply.HasField("shipping_address") else None
    return Order(
        orderId=reply.order_id,
        userId=reply.user_id,
        status=reply.status,
        items=[
            OrderItem(
                productId=i.product_id,
                quantity=i.quantity,
                price=Decimal(i.price.amount),
                status=i.status,
            )
            for i in reply.items
        ],
        total=Decimal(reply.total.amount),
        currency=reply.total.currency,
        statusHistory=[
            StatusChange(
                at=h.at,
                fromStatus=h.from_status or None,
                toStatus=h.to_status,
                reason=h.reason or None,
            )
            for h in reply.history
        ],
        payment=Payment(
            method=reply.payment.method,
            last4=reply.payment.last4 or None,
            paymentId=reply.payment.payment_id or None,
            paid=reply.payment.paid,
            refunded=reply.payment.refunded,
        ),
        shippingAddress=Address(
            name=a.name,
            line1=a.line1,
            line2=a.line2 or None,
            city=a.city,
            postalCode=a.postal_code,
            country=a.country,
        )
        if a is not None
        else None,
        shipmentId=reply.shipment_id or None,
        cancelReason=reply.cancel_reason or None,
        settled=reply.settled,
        pending=list(reply.pending),
        createdAt=reply.created_at,
        updatedAt=reply.updated_at,
    )


def address_message(a: ShippingAddress) -> pb.Address:
    return pb.Address(
        name=a.name,
        line1=a.line1,
        line2=a.line2 or "",
        city=a.city,
        postal_code=a.postalCode,
        country=a.country,
    )


@router.post(
    "",
    status_code=202,
    summary="Place an order; payment, stock and delivery follow in the background",
)
async def place_order(
    body: NewOrder,
    caller: CurrentCaller,
    upstream: Upstream,
    response: Response,
    key: IdempotencyKey = None,
) -> Order:
    message = pb.CreateOrderRequest(
        items=[pb.ItemRequest(product_id=i.productId, quantity=i.quantity) for i in body.items],
        payment=await payment_method(body.payment, upstream, pb.PaymentMethod),
        shipping_address=address_message(body.shippingAddress),
    )
    reply = await upstream.call("order", OrdersStub, "CreateOrder", message)
    response.headers["Location"] = f"/api/v1/orders/{reply.order_id}"
    return order_of(reply)


@router.get("", summary="My orders, newest first (an admin sees everyone's)")
async def list_orders(
    caller: CurrentCaller,
    upstream: Upstream,
    status: Status | None = None,
    userId: Annotated[str | None, Query(max_length=200, description="Admin only")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrderPage:
    message = pb.ListOrdersRequest(status=status or "", user_id=userId or "")
    message.page.page, message.page.page_size = page, pageSize
    reply = await upstream.call("order", OrdersStub, "ListOrders", message)
    return OrderPage(
        items=[order_of(o) for o in reply.orders],
        page=reply.page.page,
        pageSize=reply.page.page_size,
        total=reply.page.total,
    )


@router.get("/{orderId}", summary="One order: status, items, history, payment, shipments")
async def get_order(orderId: OrderId, caller: CurrentCaller, upstream: Upstream) -> Order:
    reply = await upstream.call(
        "order", OrdersStub, "GetOrder", pb.GetOrderRequest(order_id=orderId)
    )
    order = order_of(reply)
    if order.shipmentId is not None:
        # Best effort: the order is worth showing even when shipping cannot be asked.
        with contextlib.suppress(Problem):
            found = await upstream.call(
                "shipping",
                ShippingStub,
                "ListShipments",
                shipping_pb2.ListShipmentsRequest(order_id=orderId),
            )
            for s in found.shipments:
                if s.kind == "delivery":
                    order.shipment = shipment_of(s)
                else:
                    order.returnShipment = shipment_of(s)
    return order


@router.post("/{orderId}/cancel", summary="Cancel my order (refund, release, return follow)")
async def cancel_order(
    orderId: OrderId, caller: CurrentCaller, upstream: Upstream, body: Cancellation | None = None
) -> Order:
    message = pb.CancelOrderRequest(order_id=orderId, reason=(body.reason if body else None) or "")
    return order_of(await upstream.call("order", OrdersStub, "CancelOrder", message))


@router.get(
    "/{orderId}/wait",
    summary="Wait until the order reaches a status (long poll)",
    description="`settled`: paid and reserved, or cancelled with every compensation done (the "
    "money back, the stock released). An order not there yet (the checkout's 202 came a moment "
    "ago) is waited for within `timeout`; 404 if it never appears or is someone else's.",
)
async def wait_for_order(
    orderId: OrderId,
    caller: CurrentCaller,
    upstream: Upstream,
    until: Literal["PAID", "RESERVED", "COMPLETED", "terminal", "settled"] = "terminal",
    timeout: Annotated[float, Query(ge=0, le=60, description="seconds")] = 30.0,
) -> WaitOutcome:
    message = pb.WaitOrderRequest(order_id=orderId, until=until, timeout_seconds=timeout)
    reply = await upstream.call("order", OrdersStub, "WaitOrder", message, timeout=timeout + 5)
    return WaitOutcome(outcome=reply.outcome, order=order_of(reply.order))


@router.get(
    "/{orderId}/stream",
    summary="Server-sent events: the order now, then on every change, until it is final",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_order(
    orderId: OrderId, caller: CurrentCaller, upstream: Upstream
) -> StreamingResponse:
    try:
        stub = OrdersStub(upstream.ctx.channel("order"))  # type: ignore[no-untyped-call]
    except LookupError:
        raise Problem(503, "the order service is not available") from None
    call = stub.WatchOrder(pb.WatchOrderRequest(order_id=orderId), metadata=upstream.metadata())
    try:
        first = await within(upstream.ctx.settings.grpc_deadline, call.read())
    except grpc.aio.AioRpcError as exc:
        raise problem_of("order", "WatchOrder", exc) from None
    except TimeoutError:
        call.cancel()
        raise Problem(503, "the order service did not answer; retry later") from None
    return StreamingResponse(
        _events(call, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(call: Any, first: pb.Order) -> AsyncIterator[str]:
    """Each order as an ``order`` event (its version as the event id), with keep-alive
    comments in between; the gRPC call ends with the stream (or the client going away)."""
    changes: asyncio.Queue[pb.Order | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            while (reply := await call.read()) is not grpc.aio.EOF:
                await changes.put(reply)
        except grpc.aio.AioRpcError:
            pass
        finally:
            await changes.put(None)

    reader = asyncio.create_task(pump())
    try:
        order: pb.Order | None = first
        while order is not None:
            data = order_of(order).model_dump_json()
            yield f"event: order\nid: {order.version}\ndata: {data}\n\n"
            while True:
                try:
                    order = await within(HEARTBEAT, changes.get())
                    break
                except TimeoutError:
                    yield ": keep-alive\n\n"
        yield f"event: end\ndata: {json.dumps({'orderId': first.order_id})}\n\n"
    finally:
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
