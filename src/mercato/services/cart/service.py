"""cart: one active cart per user, priced from the catalog, checked out into an order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.cart.v1 import cart_pb2, cart_pb2_grpc
from mercato.contracts.events import ProductDeleted, ProductUpdated
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.cart.abandonment import watch_abandoned_carts
from mercato.services.cart.grpc_api import CartApi
from mercato.services.cart.handlers import drop_deleted_product, reprice_cart_items


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    cart_pb2_grpc.add_CartServicer_to_server(CartApi(ctx), server)  # type: ignore[no-untyped-call]
    return [cart_pb2.DESCRIPTOR.services_by_name["Cart"].full_name]


service = Service(
    name="cart",
    migrations=Path(__file__).parent / "migrations",
    handlers=[
        on(ProductUpdated, reprice_cart_items),
        on(ProductDeleted, drop_deleted_product),
    ],
    grpc=register,
    tasks=[watch_abandoned_carts],
)
