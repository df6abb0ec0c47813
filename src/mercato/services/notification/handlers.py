"""notification's event handlers. Each is one or two statements in the consumer's transaction:
keep what identity, catalog and order say (``facts``), and note the events to tell someone
about (``requests``); composing and mailing happen later, in the service's own tasks
(``composer``, ``sender``), so nothing here waits for a template or an SMTP server.

Ordering: none is needed. Facts keep the value of the latest event (by its time); a request
whose order or user is not known yet waits for it (see ``composer``). Idempotent: the inbox,
and a request is keyed by its event's id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderStatusChanged,
    OutOfStock,
    Payload,
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
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.notification import domain, facts
from mercato.services.notification.domain import Kind
from mercato.services.notification.tables import requests


def _when(uow: UnitOfWork) -> datetime:
    """When the event being handled happened (its publisher's clock)."""
    return uow.cause.time if uow.cause is not None else datetime.now(UTC)


async def _request(uow: UnitOfWork, kind: Kind, event: Payload) -> None:
    assert uow.cause is not None
    now = datetime.now(UTC)
    row = {
        "event_id": uow.cause.id,
        "kind": kind.name,
        "data": json.dumps(event.dump()),
        "received_at": now,
        "attempts": 0,
        "not_before": now,
    }
    insert = postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert
    await uow.conn.execute(insert(requests).values(row).on_conflict_do_nothing())


# -- facts -----------------------------------------------------------------------------------
async def welcome_new_user(event: UserCreated, uow: UnitOfWork) -> None:
    await facts.keep_user(uow.conn, event.userId, _when(uow), email=event.email, name=event.name)
    await _request(uow, domain.WELCOME, event)


async def keep_profile(event: ProfileUpdated, uow: UnitOfWork) -> None:
    await facts.keep_user(uow.conn, event.userId, _when(uow), email=event.email, name=event.name)


async def keep_roles(event: UserRolesUpdated, uow: UnitOfWork) -> None:
    await facts.keep_user(uow.conn, event.userId, _when(uow), is_admin="admin" in event.roles)


async def keep_order(event: OrderCreated, uow: UnitOfWork) -> None:
    await facts.keep_order(
        uow.conn,
        event.orderId,
        event.userId,
        event.items,
        event.totalAmount,
        event.currency,
        _when(uow),
    )


async def keep_new_product_name(event: ProductCreated, uow: UnitOfWork) -> None:
    await facts.keep_product_name(uow.conn, event.productId, event.name, _when(uow))


async def keep_product_name(event: ProductUpdated, uow: UnitOfWork) -> None:
    if event.name is not None:
        await facts.keep_product_name(uow.conn, event.productId, event.name, _when(uow))


# -- news to tell ----------------------------------------------------------------------------
async def tell_order_paid(event: OrderStatusChanged, uow: UnitOfWork) -> None:
    await _request(uow, domain.ORDER_PAID, event)


async def tell_order_on_its_way(event: OrderStatusChanged, uow: UnitOfWork) -> None:
    await _request(uow, domain.ORDER_DELIVERING, event)


async def tell_order_completed(event: OrderCompleted, uow: UnitOfWork) -> None:
    await _request(uow, domain.ORDER_COMPLETED, event)


async def tell_order_cancelled(event: OrderCancelled, uow: UnitOfWork) -> None:
    await _request(uow, domain.ORDER_CANCELLED, event)


async def tell_payment_failed(event: PaymentFailed, uow: UnitOfWork) -> None:
    await _request(uow, domain.PAYMENT_FAILED, event)


async def tell_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    await _request(uow, domain.PAYMENT_REFUNDED, event)


async def tell_shipment_created(event: ShipmentCreated, uow: UnitOfWork) -> None:
    await _request(uow, domain.SHIPMENT_CREATED, event)


async def warn_stock_low(event: StockLow, uow: UnitOfWork) -> None:
    await _request(uow, domain.STOCK_LOW, event)


async def warn_out_of_stock(event: OutOfStock, uow: UnitOfWork) -> None:
    await _request(uow, domain.OUT_OF_STOCK, event)
