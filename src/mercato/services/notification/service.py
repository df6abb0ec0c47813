"""notification: the service declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio
import structlog

from mercato.api.notification.v1 import notification_pb2, notification_pb2_grpc
from mercato.contracts.events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderStatusChanged,
    OutOfStock,
    PaymentFailed,
    PaymentRefunded,
    ProductCreated,
    ProductUpdated,
    ProfileUpdated,
    ShipmentCreated,
    StockLow,
    UserCreated,
    UserRolesUpdated,
)
from mercato.platform.dead_letters import Redriver
from mercato.platform.inbox import on
from mercato.platform.runtime.service import UNHURRIED, Service, ServiceContext
from mercato.services.notification import handlers as h
from mercato.services.notification.composer import composer
from mercato.services.notification.grpc_api import NotificationsApi
from mercato.services.notification.mail import FileTransport
from mercato.services.notification.outcasts import MailRedrive
from mercato.services.notification.sender import sender, transport_of

log = structlog.get_logger(__name__)


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    notification_pb2_grpc.add_NotificationsServicer_to_server(NotificationsApi(ctx), server)  # type: ignore[no-untyped-call]
    return [notification_pb2.DESCRIPTOR.services_by_name["Notifications"].full_name]


async def say_where_mail_goes(ctx: ServiceContext) -> None:
    transport = transport_of(ctx)
    if isinstance(transport, FileTransport):
        log.warning(
            "no MERCATO_SMTP_URL: mail is not sent; each message is kept in the inbox and "
            "written as an .eml file",
            folder=transport.shown,
        )
    else:
        log.info("mail goes through SMTP", server=transport.shown)


async def redrive_mail(ctx: ServiceContext) -> None:
    await Redriver(ctx.db, MailRedrive(ctx.db)).run()


service = Service(
    name="notification",
    migrations=Path(__file__).parent / "migrations",
    batch_wait=UNHURRIED,
    handlers=[
        # What it keeps: users and admins (identity), orders (order), product names (catalog).
        on(UserCreated, h.welcome_new_user),
        on(ProfileUpdated, h.keep_profile),
        on(UserRolesUpdated, h.keep_roles),
        on(OrderCreated, h.keep_order),
        on(ProductCreated, h.keep_new_product_name),
        on(ProductUpdated, h.keep_product_name),
        # What it tells.
        on(OrderStatusChanged, h.tell_order_paid, route="PAID"),
        on(OrderStatusChanged, h.tell_order_on_its_way, route="DELIVERING"),
        on(OrderCompleted, h.tell_order_completed),
        on(OrderCancelled, h.tell_order_cancelled),
        on(PaymentFailed, h.tell_payment_failed),
        on(PaymentRefunded, h.tell_payment_refunded),
        on(ShipmentCreated, h.tell_shipment_created),
        on(StockLow, h.warn_stock_low),
        on(OutOfStock, h.warn_out_of_stock),
    ],
    grpc=register,
    on_start=say_where_mail_goes,
    tasks=[composer, sender, redrive_mail],
)
