"""Compatibility routes for clients of ``seeds/004`` (its Order Management Service).

Every answer is ``{success, data, error}`` — errors too, with the HTTP status Mercato would give.
``data`` is the order: ``{orderId, userId, status, orderItems: [{productId, quantity, price,
status}], totalAmount, currency, createdAt, updatedAt, settled}``, item statuses PENDING, EXECUTED,
CANCELED; ``settled`` (an addition) is true once the outcome is final for money and stock (a
CANCELLED order's refund and stock release are done). The seed's order has no payment or address:
such an order is paid from the user's wallet and shipped without an address. ``PUT`` can cancel
(``status`` CANCELED or CANCELLED); the status otherwise follows the saga, and items cannot change
once placed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from mercato.api.order.v1 import order_pb2 as pb
from mercato.api.order.v1.order_pb2_grpc import OrdersStub
from mercato.services.gateway.inputs import Count, Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.security import CurrentCaller
from mercato.services.gateway.upstream import (
    BAD_IDEMPOTENCY_KEY,
    Gateway,
    Upstream,
    valid_idempotency_key,
)

Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class OmsItemIn(Input):
    model_config = ConfigDict(extra="ignore")

    productId: Annotated[str, Field(min_length=1, max_length=200)]
    quantity: Annotated[Count, Field(ge=1, le=10_000)]
    status: str | None = None


class OmsNewOrder(Input):
    model_config = ConfigDict(extra="ignore")

    userId: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    orderItems: Annotated[list[OmsItemIn], Field(min_length=1, max_length=100)]


class OmsChange(Input):
    model_config = ConfigDict(extra="ignore")

    status: Annotated[str, Field(min_length=1, max_length=20)]
    orderItems: list[OmsItemIn] | None = None


class OmsItem(BaseModel):
    productId: str
    quantity: int
    price: Amount
    status: str


class OmsOrder(BaseModel):
    orderId: str
    userId: str
    status: str
    orderItems: list[OmsItem]
    totalAmount: Amount
    currency: str
    createdAt: str
    updatedAt: str
    settled: bool


class OmsAnswer(BaseModel):
    success: bool
    data: OmsOrder | None
    error: str | None


# Failures answer in the seed's shape too (only a missing or bad token is a problem+json).
_FAILURES: dict[int | str, dict[str, Any]] = {
    code: {"model": OmsAnswer, "description": "Failed: success is false, error says why"}
    for code in (403, 404, 409, 422, 503)
}
router = APIRouter(
    prefix="/oms/orders",
    tags=["orders (seed 004 compatibility)"],
    responses={**PROBLEM_RESPONSES, **_FAILURES},
)
_ITEM = {
    "type": "object",
    "required": ["productId", "quantity"],
    "properties": {
        "productId": {"type": "string", "minLength": 1, "maxLength": 200},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000},
    },
}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The documented request body (the route reads the JSON itself, see ``_json``)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


NEW_ORDER = _body(
    {
        "userId": {"type": "string", "minLength": 1, "maxLength": 200},
        "orderItems": {"type": "array", "items": _ITEM, "minItems": 1, "maxItems": 100},
    },
    ["orderItems"],
)
CHANGE = _body(
    {
        "status": {"type": "string", "minLength": 1, "maxLength": 20},
        "orderItems": {"type": "array", "items": _ITEM},
    },
    ["status"],
)


def oms_order(reply: pb.Order) -> OmsOrder:
    return OmsOrder(
        orderId=reply.order_id,
        userId=reply.user_id,
        status=reply.status,
        orderItems=[
            OmsItem(
                productId=i.product_id,
                quantity=i.quantity,
                price=Decimal(i.price.amount),
                status=i.status,
            )
            for i in reply.items
        ],
        totalAmount=Decimal(reply.total.amount),
        currency=reply.total.currency,
        createdAt=reply.created_at,
        updatedAt=reply.updated_at,
        settled=reply.settled,
    )


def failure(status: int, error: str) -> JSONResponse:
    body = OmsAnswer(success=False, data=None, error=error)
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


async def _answer(upstream: Gateway, method: str, message: Any, status: int = 200) -> Any:
    try:
        reply = await upstream.call("order", OrdersStub, method, message)
    except Problem as exc:
        return failure(exc.status, exc.detail or exc.title)
    return JSONResponse(
        OmsAnswer(success=True, data=oms_order(reply), error=None).model_dump(mode="json"),
        status_code=status,
    )


async def _json(request: Request) -> Any:
    """The body as JSON, or None: read here, so that even a broken body fails in the seed's
    shape rather than as a problem."""
    try:
        return await request.json()
    except ValueError:
        return None


def _invalid(exc: ValidationError) -> JSONResponse:
    where = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors())
    return failure(422, f"invalid request: {where}")


def _bad_id(order_id: str) -> JSONResponse | None:
    return None if 1 <= len(order_id) <= 200 else failure(404, "no such order")


@router.post(
    "",
    status_code=201,
    response_model=OmsAnswer,
    summary="Create an order: {userId, orderItems: [{productId, quantity}]} (seed 004)",
    openapi_extra=NEW_ORDER,
)
async def create_order(
    request: Request,
    caller: CurrentCaller,
    upstream: Upstream,
    # Checked here, so that a bad key too fails in the seed's shape.
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    if key is not None and not valid_idempotency_key(key):
        return failure(422, BAD_IDEMPOTENCY_KEY)
    try:
        asked = OmsNewOrder.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(exc)
    user_id = asked.userId or caller.user_id
    if not caller.may_act_for(user_id):
        return failure(403, "userId is not you")
    message = pb.CreateOrderRequest(
        items=[
            pb.ItemRequest(product_id=i.productId, quantity=i.quantity) for i in asked.orderItems
        ],
        user_id=user_id if user_id != caller.user_id else "",
    )
    return await _answer(upstream, "CreateOrder", message, status=201)


@router.get("/{orderId}", response_model=OmsAnswer, summary="Get an order (seed 004)")
async def get_order(orderId: str, caller: CurrentCaller, upstream: Upstream) -> Any:
    if (bad := _bad_id(orderId)) is not None:
        return bad
    return await _answer(upstream, "GetOrder", pb.GetOrderRequest(order_id=orderId))


@router.put(
    "/{orderId}",
    response_model=OmsAnswer,
    summary="Update an order: {status, orderItems?} — cancel with CANCELED (seed 004)",
    openapi_extra=CHANGE,
)
async def update_order(
    orderId: str, request: Request, caller: CurrentCaller, upstream: Upstream
) -> Any:
    if (bad := _bad_id(orderId)) is not None:
        return bad
    try:
        change = OmsChange.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(exc)
    message = pb.UpdateOrderRequest(order_id=orderId, status=change.status.upper())
    for item in change.orderItems or ():
        message.items.append(pb.OrderItemUpdate(product_id=item.productId, quantity=item.quantity))
    return await _answer(upstream, "UpdateOrder", message)
