"""webhooks: the service declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.webhooks.v1 import webhooks_pb2, webhooks_pb2_grpc
from mercato.contracts.events import MODELS
from mercato.platform.inbox import every
from mercato.platform.runtime.service import UNHURRIED, Service, ServiceContext
from mercato.services.webhooks.delivery import deliver_webhooks, prune_delivered
from mercato.services.webhooks.grpc_api import WebhooksApi
from mercato.services.webhooks.handlers import record_for_subscribers, subscribed


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    webhooks_pb2_grpc.add_WebhooksServicer_to_server(WebhooksApi(ctx), server)  # type: ignore[no-untyped-call]
    return [webhooks_pb2.DESCRIPTOR.services_by_name["Webhooks"].full_name]


service = Service(
    name="webhooks",
    migrations=Path(__file__).parent / "migrations",
    batch_wait=UNHURRIED,
    # Every event type of the contracts, with one wildcard (why not the union of what
    # subscriptions ask for: see handlers); those no subscription wants end before any
    # transaction. A type not in the contracts is a dead letter, as for any consumer.
    handlers=[every(record_for_subscribers, MODELS, interest=subscribed)],
    grpc=register,
    tasks=[deliver_webhooks, prune_delivered],
)
