"""audit's gRPC API: the log read back, for admins (the gateway's /api/v1/admin routes)."""

from __future__ import annotations

from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.audit.v1 import audit_pb2 as pb
from mercato.api.audit.v1 import audit_pb2_grpc
from mercato.platform.auth import require_caller
from mercato.platform.runtime.service import ServiceContext
from mercato.services.audit import store

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE = 50


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


class AuditApi(audit_pb2_grpc.AuditServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def QueryEvents(
        self, request: pb.QueryEventsRequest, context: Context
    ) -> pb.QueryEventsReply:
        await require_caller(self.ctx, context, role="admin")
        try:
            where = store.EventFilter(
                type=request.type or None,
                subject=request.subject or None,
                correlation_id=request.correlation_id or None,
                since=store.parse_time(request.since, "since"),
                until=store.parse_time(request.until, "until"),
            )
            async with self.ctx.db.connect() as conn:
                found, following = await store.newest_first(
                    conn, where, request.cursor or None, request.limit or DEFAULT_PAGE
                )
        except store.BadQuery as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.QueryEventsReply(events=found, next_cursor=following or "")

    async def OrderStory(
        self, request: pb.OrderStoryRequest, context: Context
    ) -> pb.OrderStoryReply:
        await require_caller(self.ctx, context, role="admin")
        if not request.order_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "orderId is required")
        async with self.ctx.db.connect() as conn:
            story = await store.order_story(conn, request.order_id)
        if not story:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no events of that order")
        first = story[0].time
        return pb.OrderStoryReply(
            events=[
                pb.StoryEvent(
                    event=e.to_json(),
                    since_first_ms=round((e.time - first).total_seconds() * 1000),
                )
                for e in story
            ]
        )
