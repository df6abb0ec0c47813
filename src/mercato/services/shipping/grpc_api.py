"""shipping's gRPC API: reading shipments (the order's owner or an admin) and the carrier's
callbacks (admin)."""

from __future__ import annotations

from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.shipping.v1 import shipping_pb2 as pb
from mercato.api.shipping.v1 import shipping_pb2_grpc
from mercato.platform.auth import require_caller
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.services.shipping import shipments, store
from mercato.services.shipping.carrier import delay_of
from mercato.services.shipping.domain import Shipment, ShippingError
from mercato.services.shipping.shipments import UnknownShipment

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


class ShippingApi(shipping_pb2_grpc.ShippingServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def reply(self, s: Shipment) -> pb.Shipment:
        delay = delay_of(self.ctx)
        message = pb.Shipment(
            shipment_id=s.shipment_id,
            order_id=s.order_id,
            kind=s.kind.value,
            status=s.status.value,
            items=[pb.Item(product_id=i.productId, quantity=i.quantity) for i in s.items],
            return_of=s.return_of or "",
            reason=s.reason or "",
            created_at=rfc3339(s.created_at),
            updated_at=rfc3339(s.updated_at),
            expected_at=rfc3339(s.created_at + delay) if delay is not None and s.in_transit else "",
        )
        if s.address is not None:
            a = s.address
            message.address.CopyFrom(
                pb.Address(
                    name=a.name,
                    line1=a.line1,
                    line2=a.line2 or "",
                    city=a.city,
                    postal_code=a.postalCode,
                    country=a.country,
                )
            )
        return message

    async def GetShipment(self, request: pb.GetShipmentRequest, context: Context) -> pb.Shipment:
        caller = await require_caller(self.ctx, context)
        async with self.ctx.db.connect() as conn:
            found = await store.get(conn, request.shipment_id) if request.shipment_id else None
        if found is None or not (caller.is_admin or found.user_id == caller.user_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such shipment")
        return self.reply(found)

    async def ListShipments(
        self, request: pb.ListShipmentsRequest, context: Context
    ) -> pb.ListShipmentsReply:
        caller = await require_caller(self.ctx, context)
        if not request.order_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "orderId is required")
        async with self.ctx.db.connect() as conn:
            found = await store.of_order(conn, request.order_id)
        # Someone else's order looks like an order with no shipments.
        visible = [s for s in found if caller.is_admin or s.user_id == caller.user_id]
        return pb.ListShipmentsReply(shipments=[self.reply(s) for s in visible])

    async def MarkDelivered(
        self, request: pb.MarkDeliveredRequest, context: Context
    ) -> pb.Shipment:
        await require_caller(self.ctx, context, role="admin")
        try:
            async with self.ctx.transaction() as uow:
                shipment = await shipments.deliver(uow, request.shipment_id)
        except UnknownShipment:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such shipment")
        except ShippingError as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return self.reply(shipment)

    async def MarkFailed(self, request: pb.MarkFailedRequest, context: Context) -> pb.Shipment:
        await require_caller(self.ctx, context, role="admin")
        reason = request.reason.strip()[:500] or "the carrier could not deliver"
        try:
            async with self.ctx.transaction() as uow:
                shipment = await shipments.fail(uow, request.shipment_id, reason)
        except UnknownShipment:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such shipment")
        except ShippingError as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return self.reply(shipment)
