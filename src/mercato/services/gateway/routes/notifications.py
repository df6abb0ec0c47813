"""The in-app inbox: what the shop told me (an admin may read anyone's), and marking it read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from mercato.api.common.v1 import common_pb2
from mercato.api.notification.v1 import notification_pb2 as pb
from mercato.api.notification.v1.notification_pb2_grpc import NotificationsStub
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import CurrentCaller
from mercato.services.gateway.upstream import Upstream

router = APIRouter(
    prefix="/api/v1/notifications", tags=["notifications"], responses=PROBLEM_RESPONSES
)


class Notification(BaseModel):
    id: str
    kind: str = Field(description="welcome, order_paid, order_cancelled, stock_low…")
    subject: str
    text: str
    html: str
    createdAt: str
    readAt: str | None
    userId: str


class NotificationPage(BaseModel):
    items: list[Notification]
    page: int
    pageSize: int
    total: int


@router.get("", summary="My notifications, newest first (an admin may name userId)")
async def list_notifications(
    caller: CurrentCaller,
    upstream: Upstream,
    userId: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    unread: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> NotificationPage:
    message = pb.ListNotificationsRequest(
        user_id=userId or "",
        unread_only=unread,
        page=common_pb2.PageRequest(page=page, page_size=pageSize),
    )
    reply = await upstream.call("notification", NotificationsStub, "ListNotifications", message)
    return NotificationPage(
        items=[
            Notification(
                id=n.id,
                kind=n.kind,
                subject=n.subject,
                text=n.text,
                html=n.html,
                createdAt=n.created_at,
                readAt=n.read_at or None,
                userId=n.user_id,
            )
            for n in reply.notifications
        ],
        page=reply.page.page,
        pageSize=reply.page.page_size,
        total=reply.page.total,
    )


@router.post(
    "/{notificationId}/read",
    status_code=204,
    response_class=Response,
    summary="Mark one of my notifications read",
)
async def mark_read(
    notificationId: Annotated[str, Path(min_length=1, max_length=200)],
    caller: CurrentCaller,
    upstream: Upstream,
) -> Response:
    message = pb.MarkReadRequest(notification_id=notificationId)
    await upstream.call("notification", NotificationsStub, "MarkRead", message)
    return Response(status_code=204)
