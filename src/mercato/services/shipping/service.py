"""shipping: the service declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from mercato.contracts.events import OrderCancelled, OrderStatusChanged
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.shipping.carrier import sandbox_carrier
from mercato.services.shipping.grpc_api import ShippingApi
from mercato.services.shipping.handlers import ship_handed_over_order, take_back_cancelled_order


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    shipping_pb2_grpc.add_ShippingServicer_to_server(ShippingApi(ctx), server)  # type: ignore[no-untyped-call]
    return [shipping_pb2.DESCRIPTOR.services_by_name["Shipping"].full_name]


service = Service(
    name="shipping",
    migrations=Path(__file__).parent / "migrations",
    handlers=[
        # Bound to the hand-over only: no other status change reaches this queue.
        on(OrderStatusChanged, ship_handed_over_order, route="RESERVED"),
        on(OrderCancelled, take_back_cancelled_order),
    ],
    grpc=register,
    tasks=[sandbox_carrier],
)
