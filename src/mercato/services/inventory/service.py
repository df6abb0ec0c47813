"""inventory: stock on hand and reservations per product."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mercato.contracts.events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    PaymentFailed,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ReturnShipmentReceived,
)
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.inventory import handlers, store
from mercato.services.inventory.grpc_api import InventoryApi


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    inventory_pb2_grpc.add_InventoryServicer_to_server(InventoryApi(ctx), server)  # type: ignore[no-untyped-call]
    return [inventory_pb2.DESCRIPTOR.services_by_name["Inventory"].full_name]


async def keep_settings(ctx: ServiceContext) -> None:
    """Handlers get no context: the low-stock threshold is kept where they can read it."""
    async with ctx.db.begin() as conn:
        await store.set_threshold(conn, ctx.settings.stock_low_threshold)


service = Service(
    name="inventory",
    migrations=Path(__file__).parent / "migrations",
    handlers=[
        on(ProductCreated, handlers.stock_product),
        on(ProductUpdated, handlers.set_product_stock),
        on(ProductDeleted, handlers.retire_product),
        on(OrderCreated, handlers.reserve_stock),
        on(OrderCancelled, handlers.release_cancelled),
        on(PaymentFailed, handlers.release_unpaid),
        on(OrderCompleted, handlers.deduct_stock),
        on(ReturnShipmentReceived, handlers.receive_return),
    ],
    grpc=register,
    on_start=keep_settings,
)
