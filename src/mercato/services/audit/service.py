"""audit: an append-only copy of every event, its retention, replays; read over gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.audit.v1 import audit_pb2, audit_pb2_grpc
from mercato.contracts.events import MODELS
from mercato.platform.inbox import every
from mercato.platform.runtime.service import UNHURRIED, Service, ServiceContext
from mercato.services.audit.grpc_api import AuditApi
from mercato.services.audit.handlers import record_events
from mercato.services.audit.replay import replay_requested
from mercato.services.audit.retention import prune_expired


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    audit_pb2_grpc.add_AuditServicer_to_server(AuditApi(ctx), server)  # type: ignore[no-untyped-call]
    return [audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name]


service = Service(
    name="audit",
    migrations=Path(__file__).parent / "migrations",
    batch_wait=UNHURRIED,
    # One wildcard: every event of every type, those no other service consumes too. An event
    # of a type not in the catalog, or whose payload fails its model, is a dead letter, as it
    # is for any other consumer.
    handlers=[every(record_events, MODELS)],
    grpc=register,
    tasks=[prune_expired, replay_requested],
)
