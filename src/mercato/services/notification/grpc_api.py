"""notification's gRPC API: the inbox (own notifications; an admin may read anyone's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.common.v1 import common_pb2
from mercato.api.notification.v1 import notification_pb2 as pb
from mercato.api.notification.v1 import notification_pb2_grpc
from mercato.platform.auth import require_caller
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.services.notification import inbox

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE_SIZE = 100


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def reply_of(row: Any) -> pb.Notification:
    return pb.Notification(
        id=row.id,
        kind=row.kind,
        subject=row.subject,
        text=row.text,
        html=row.html,
        created_at=rfc3339(row.created_at),
        read_at=rfc3339(row.read_at) if row.read_at is not None else "",
        user_id=row.user_id,
    )


class NotificationsApi(notification_pb2_grpc.NotificationsServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsReply:
        caller = await require_caller(self.ctx, context)
        user_id = request.user_id or caller.user_id
        if not caller.may_act_for(user_id):
            denied = "only an admin reads another user's notifications"
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, denied)
        page = request.page.page or 1
        size = request.page.page_size or 20
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page ≥ 1, pageSize 1 to 100")
        async with self.ctx.db.connect() as conn:
            rows, total = await inbox.page_of(conn, user_id, page, size, request.unread_only)
        return pb.ListNotificationsReply(
            notifications=[reply_of(r) for r in rows],
            page=common_pb2.PageInfo(page=page, page_size=size, total=total),
        )

    async def MarkRead(self, request: pb.MarkReadRequest, context: Context) -> pb.MarkReadReply:
        caller = await require_caller(self.ctx, context)
        if not request.notification_id:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such notification")
        async with self.ctx.db.begin() as conn:
            mine = await inbox.mark_read(
                conn, request.notification_id, caller.user_id, datetime.now(UTC)
            )
        if not mine:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such notification")
        return pb.MarkReadReply()
