"""order: the service declaration, and the task that cancels orders whose step timed out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import grpc.aio
import structlog

from mercato.api.order.v1 import order_pb2, order_pb2_grpc
from mercato.contracts.events import (
    CartCheckedOut,
    PaymentCancelled,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.order import orders, store
from mercato.services.order.domain import Timeouts
from mercato.services.order.grpc_api import OrdersApi
from mercato.services.order.handlers import advance_saga, lock_orders, place_checked_out_order
from mercato.services.order.pricing import price_list

log = structlog.get_logger(__name__)


def timeouts_of(ctx: ServiceContext) -> Timeouts:
    s = ctx.settings
    return Timeouts(
        payment=timedelta(seconds=s.order_payment_timeout),
        reservation=timedelta(seconds=s.order_reservation_timeout),
        shipment=timedelta(seconds=s.order_shipment_timeout),
    )


async def cancel_overdue_orders(ctx: ServiceContext) -> None:
    """Cancel, with compensation, every order whose waiting step has timed out.

    Each order in its own transaction with its row locked, so replicas doing the same, or a
    participant's late answer, cannot cancel it twice: whoever comes second finds it moved on.
    """
    timeouts = timeouts_of(ctx)
    shortest = min(timeouts.payment, timeouts.reservation, timeouts.shipment).total_seconds()
    pause = min(1.0, max(0.05, shortest / 4))
    while True:
        try:
            async with ctx.db.connect() as conn:
                due = await store.overdue(conn, timeouts, orders.now_utc())
            for order_id in due:
                async with ctx.transaction() as uow:
                    await orders.expire_if_overdue(uow, order_id, timeouts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is briefly away: try again next round
            log.warning("could not check for overdue orders", error=str(exc))
        await asyncio.sleep(pause)


async def start(ctx: ServiceContext) -> None:
    price_list(ctx)  # the handlers price checkouts that came without prices through it


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    order_pb2_grpc.add_OrdersServicer_to_server(OrdersApi(ctx), server)  # type: ignore[no-untyped-call]
    return [order_pb2.DESCRIPTOR.services_by_name["Orders"].full_name]


service = Service(
    name="order",
    migrations=Path(__file__).parent / "migrations",
    handlers=[
        on(CartCheckedOut, place_checked_out_order),
        *(
            on(model, advance_saga)
            for model in (
                PaymentInitiated,
                PaymentCompleted,
                PaymentFailed,
                PaymentCancelled,
                PaymentRefunded,
                StockReserved,
                StockReservationFailed,
                StockReleased,
                ShipmentCreated,
                ShipmentDelivered,
                ShipmentFailed,
            )
        ),
    ],
    grpc=register,
    prefetch=lock_orders,
    tasks=[cancel_overdue_orders],
    on_start=start,
)
