"""webhooks: the service declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.webhooks.v1 import webhooks_pb2, webhooks_pb2_grpc
from mercato.contracts.events import REGISTRY
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.webhooks.delivery import deliver_webhooks
from mercato.services.webhooks.grpc_api import WebhooksApi
from mercato.services.webhooks.handlers import read_subscriptions, record_for_subscribers


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    webhooks_pb2_grpc.add_WebhooksServicer_to_server(WebhooksApi(ctx), server)  # type: ignore[no-untyped-call]
    return [webhooks_pb2.DESCRIPTOR.services_by_name["Webhooks"].full_name]


service = Service(
    name="webhooks",
    migrations=Path(__file__).parent / "migrations",
    # Every event type of the contracts (why not the union of what subscriptions ask for:
    # see handlers).
    handlers=[on(spec.model, record_for_subscribers) for spec in REGISTRY.values()],
    grpc=register,
    tasks=[deliver_webhooks],
    prefetch=read_subscriptions,
)
