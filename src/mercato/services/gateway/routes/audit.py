"""The event log (admin): events newest first, filtered and paged; an order's story."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from mercato.api.audit.v1 import audit_pb2 as pb
from mercato.api.audit.v1.audit_pb2_grpc import AuditStub
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import AdminCaller
from mercato.services.gateway.upstream import Upstream

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=PROBLEM_RESPONSES)

Text = Annotated[str | None, Query(min_length=1, max_length=300)]
Time = Annotated[
    str | None, Query(max_length=64, description="RFC 3339 with its zone, 2026-12-07T14:00:00Z")
]


class CloudEvent(BaseModel):
    """A structured-mode CloudEvent 1.0, as stored: ``subject``, ``correlationid``,
    ``causationid`` and ``traceparent`` are there when the event has them."""

    model_config = ConfigDict(extra="allow")

    specversion: str
    id: str
    source: str = Field(description="mercato/<publishing service>")
    type: str
    time: str
    datacontenttype: str
    schemaversion: int
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[CloudEvent]
    nextCursor: str | None = Field(description="The next (older) page; null: the last page")


class StoryEvent(BaseModel):
    id: str
    type: str
    source: str = Field(description="The publisher: mercato/<service>")
    time: str
    subject: str | None
    causationId: str | None = Field(description="The id of the event that caused this one")
    correlationId: str | None
    sinceFirstMs: int = Field(description="Milliseconds since the story's first event")
    data: dict[str, Any]


class OrderStory(BaseModel):
    orderId: str
    events: list[StoryEvent]


@router.get("/events", summary="Stored events, newest first (admin)")
async def list_events(
    caller: AdminCaller,
    upstream: Upstream,
    type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    subject: Text = None,
    correlationId: Text = None,
    since: Time = None,
    until: Time = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=600)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    message = pb.QueryEventsRequest(
        type=type or "",
        subject=subject or "",
        correlation_id=correlationId or "",
        since=since or "",
        until=until or "",
        cursor=cursor or "",
        limit=limit,
    )
    reply = await upstream.call("audit", AuditStub, "QueryEvents", message)
    return EventPage(
        items=[CloudEvent.model_validate_json(e) for e in reply.events],
        nextCursor=reply.next_cursor or None,
    )


@router.get("/orders/{orderId}/story", summary="Every event of one order, in time order (admin)")
async def order_story(
    orderId: Annotated[str, Path(min_length=1, max_length=200)],
    caller: AdminCaller,
    upstream: Upstream,
) -> OrderStory:
    message = pb.OrderStoryRequest(order_id=orderId)
    reply = await upstream.call("audit", AuditStub, "OrderStory", message)
    events = []
    for item in reply.events:
        doc = json.loads(item.event)
        events.append(
            StoryEvent(
                id=doc["id"],
                type=doc["type"],
                source=doc["source"],
                time=doc["time"],
                subject=doc.get("subject"),
                causationId=doc.get("causationid"),
                correlationId=doc.get("correlationid"),
                sinceFirstMs=item.since_first_ms,
                data=doc["data"],
            )
        )
    return OrderStory(orderId=orderId, events=events)
