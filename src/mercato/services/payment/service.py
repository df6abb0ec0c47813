"""payment: card tokens, store-credit wallets, and each order's charge, refund or void."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.payment.v1 import payment_pb2, payment_pb2_grpc
from mercato.contracts.events import OrderCancelled, OrderCreated
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.payment.grpc_api import PaymentApi
from mercato.services.payment.handlers import charge_order, refund


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    payment_pb2_grpc.add_PaymentServicer_to_server(PaymentApi(ctx), server)  # type: ignore[no-untyped-call]
    return [payment_pb2.DESCRIPTOR.services_by_name["Payment"].full_name]


service = Service(
    name="payment",
    migrations=Path(__file__).parent / "migrations",
    handlers=[on(OrderCreated, charge_order), on(OrderCancelled, refund)],
    grpc=register,
)
