"""Shipments: an order's deliveries and returns, and the carrier's callbacks (admin).

For a return shipment, ``delivered`` means the goods are back in the warehouse.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from mercato.api.shipping.v1 import shipping_pb2 as pb
from mercato.api.shipping.v1.shipping_pb2_grpc import ShippingStub
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import AdminCaller, CurrentCaller
from mercato.services.gateway.upstream import Upstream

router = APIRouter(prefix="/api/v1/shipments", tags=["shipments"], responses=PROBLEM_RESPONSES)

ShipmentId = Annotated[str, Path(min_length=1, max_length=200)]


class ShippedItem(BaseModel):
    productId: str
    quantity: int


class Shipment(BaseModel):
    shipmentId: str
    orderId: str
    kind: Literal["delivery", "return"]
    status: Literal["IN_TRANSIT", "DELIVERED", "FAILED", "STOPPED"]
    items: list[ShippedItem]
    returnOf: str | None = Field(description="A return: the delivery it brings back")
    reason: str | None
    createdAt: str
    updatedAt: str
    expectedAt: str | None = Field(description="When the sandbox carrier delivers it")


class ShipmentList(BaseModel):
    items: list[Shipment]


class Failure(Input):
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "the carrier could not deliver"


def shipment_of(reply: pb.Shipment) -> Shipment:
    return Shipment(
        shipmentId=reply.shipment_id,
        orderId=reply.order_id,
        kind=reply.kind,
        status=reply.status,
        items=[ShippedItem(productId=i.product_id, quantity=i.quantity) for i in reply.items],
        returnOf=reply.return_of or None,
        reason=reply.reason or None,
        createdAt=reply.created_at,
        updatedAt=reply.updated_at,
        expectedAt=reply.expected_at or None,
    )


@router.get("", summary="The shipments of one of my orders (any order for an admin)")
async def list_shipments(
    caller: CurrentCaller,
    upstream: Upstream,
    orderId: Annotated[str, Query(min_length=1, max_length=200)],
) -> ShipmentList:
    message = pb.ListShipmentsRequest(order_id=orderId)
    reply = await upstream.call("shipping", ShippingStub, "ListShipments", message)
    return ShipmentList(items=[shipment_of(s) for s in reply.shipments])


@router.get("/{shipmentId}", summary="One shipment")
async def get_shipment(
    shipmentId: ShipmentId, caller: CurrentCaller, upstream: Upstream
) -> Shipment:
    message = pb.GetShipmentRequest(shipment_id=shipmentId)
    return shipment_of(await upstream.call("shipping", ShippingStub, "GetShipment", message))


@router.post("/{shipmentId}/delivered", summary="The carrier delivered it (admin)")
async def mark_delivered(
    shipmentId: ShipmentId, caller: AdminCaller, upstream: Upstream
) -> Shipment:
    message = pb.MarkDeliveredRequest(shipment_id=shipmentId)
    return shipment_of(await upstream.call("shipping", ShippingStub, "MarkDelivered", message))


@router.post("/{shipmentId}/failed", summary="The carrier could not deliver it (admin)")
async def mark_failed(
    shipmentId: ShipmentId, caller: AdminCaller, upstream: Upstream, body: Failure | None = None
) -> Shipment:
    message = pb.MarkFailedRequest(shipment_id=shipmentId, reason=(body or Failure()).reason)
    return shipment_of(await upstream.call("shipping", ShippingStub, "MarkFailed", message))
