"""Webhooks (admin): outside endpoints subscribe to the shop's events; their deliveries.

Each event is POSTed as its structured CloudEvent, signed as Standard Webhooks say
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). The secret is in the answer of
the creation and of a rotation only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from google.protobuf.message import Message
from pydantic import BaseModel, Field

from mercato.api.webhooks.v1 import webhooks_pb2 as pb
from mercato.api.webhooks.v1.webhooks_pb2_grpc import WebhooksStub
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import AdminCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

router = APIRouter(prefix="/api/v1/admin/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)

SubscriptionId = Annotated[str, Path(min_length=1, max_length=200)]
Url = Annotated[str, Field(min_length=1, max_length=2000, description="http:// or https://")]
EventTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]],
    Field(min_length=1, max_length=100, description="Event type names, or ['*'] for every type"),
]
Subject = Annotated[
    str, Field(max_length=200, description="Only events about this subject (an order id…)")
]
Description = Annotated[str, Field(max_length=500)]


class Subscription(BaseModel):
    id: str
    url: str
    eventTypes: list[str]
    subject: str | None
    active: bool
    description: str
    secret: str | None = Field(
        description="The signing secret (whsec_…): only in the answer that made it"
    )
    previousSecretExpiresAt: str | None = Field(
        description="Until then the secret before the last rotation signs too"
    )
    circuit: Literal["closed", "open"] = Field(
        description="open: the endpoint failed too often in a row and is paused"
    )
    pausedUntil: str | None
    failingSince: str | None
    consecutiveFailures: int
    createdAt: str
    updatedAt: str


class SubscriptionPage(BaseModel):
    items: list[Subscription]
    page: int
    pageSize: int
    total: int


class NewSubscription(Input):
    url: Url
    eventTypes: EventTypes
    subject: Subject | None = None
    active: bool = True
    description: Description = ""


class SubscriptionChange(Input):
    url: Url | None = None
    eventTypes: EventTypes | None = None
    subject: Subject | None = Field(None, description="'' removes the filter")
    active: bool | None = Field(None, description="true also closes an open circuit")
    description: Description | None = None


class Rotation(Input):
    overlapSeconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = Field(
        86_400, description="How long the old secret keeps signing beside the new one"
    )


class Attempt(BaseModel):
    at: str
    statusCode: int | None
    latencyMs: int
    error: str | None
    responseExcerpt: str | None


class Delivery(BaseModel):
    id: str = Field(description="Also the webhook-id of every attempt and redrive")
    subscriptionId: str
    eventId: str
    eventType: str
    subject: str | None
    status: Literal["pending", "delivered", "dead"]
    attemptCount: int = Field(description="Attempts since it was made or last redriven")
    nextAttemptAt: str | None
    createdAt: str
    deliveredAt: str | None
    lastError: str | None
    attempts: list[Attempt]


class DeliveryList(BaseModel):
    items: list[Delivery]
    nextCursor: str | None


def subscription_of(r: pb.Subscription) -> Subscription:
    return Subscription(
        id=r.id,
        url=r.url,
        eventTypes=list(r.event_types),
        subject=r.subject or None,
        active=r.active,
        description=r.description,
        secret=r.secret or None,
        previousSecretExpiresAt=r.previous_secret_expires_at or None,
        circuit="open" if r.circuit == "open" else "closed",
        pausedUntil=r.paused_until or None,
        failingSince=r.failing_since or None,
        consecutiveFailures=r.consecutive_failures,
        createdAt=r.created_at,
        updatedAt=r.updated_at,
    )


def delivery_of(r: pb.Delivery) -> Delivery:
    return Delivery(
        id=r.id,
        subscriptionId=r.subscription_id,
        eventId=r.event_id,
        eventType=r.event_type,
        subject=r.subject or None,
        status=r.status,
        attemptCount=r.attempt_count,
        nextAttemptAt=r.next_attempt_at or None,
        createdAt=r.created_at,
        deliveredAt=r.delivered_at or None,
        lastError=r.last_error or None,
        attempts=[
            Attempt(
                at=a.at,
                statusCode=a.status_code or None,
                latencyMs=a.latency_ms,
                error=a.error or None,
                responseExcerpt=a.response_excerpt or None,
            )
            for a in r.attempts
        ],
    )


async def _call(upstream: Upstream, method: str, message: Message) -> Any:
    return await upstream.call("webhooks", WebhooksStub, method, message)


@router.post("", status_code=201, summary="Subscribe an endpoint to events (admin)")
async def create_subscription(
    body: NewSubscription, caller: AdminCaller, upstream: Upstream, key: IdempotencyKey = None
) -> Subscription:
    message = pb.CreateSubscriptionRequest(
        url=body.url,
        event_types=body.eventTypes,
        subject=body.subject or "",
        active=body.active,
        description=body.description,
    )
    return subscription_of(await _call(upstream, "CreateSubscription", message))


@router.get("", summary="The webhook subscriptions (admin)")
async def list_subscriptions(
    caller: AdminCaller,
    upstream: Upstream,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SubscriptionPage:
    message = pb.ListSubscriptionsRequest(page=page, page_size=pageSize)
    reply: pb.ListSubscriptionsReply = await _call(upstream, "ListSubscriptions", message)
    return SubscriptionPage(
        items=[subscription_of(s) for s in reply.subscriptions],
        page=reply.page,
        pageSize=reply.page_size,
        total=reply.total,
    )


@router.get("/{subscriptionId}", summary="One webhook subscription (admin)")
async def get_subscription(
    subscriptionId: SubscriptionId, caller: AdminCaller, upstream: Upstream
) -> Subscription:
    message = pb.GetSubscriptionRequest(id=subscriptionId)
    return subscription_of(await _call(upstream, "GetSubscription", message))


@router.patch("/{subscriptionId}", summary="Change a webhook subscription (admin)")
async def update_subscription(
    subscriptionId: SubscriptionId,
    body: SubscriptionChange,
    caller: AdminCaller,
    upstream: Upstream,
) -> Subscription:
    message = pb.UpdateSubscriptionRequest(
        id=subscriptionId,
        url=body.url,
        set_event_types=body.eventTypes is not None,
        event_types=body.eventTypes or [],
        subject=body.subject,
        active=body.active,
        description=body.description,
    )
    return subscription_of(await _call(upstream, "UpdateSubscription", message))


@router.delete(
    "/{subscriptionId}", status_code=204, summary="Delete a webhook subscription (admin)"
)
async def delete_subscription(
    subscriptionId: SubscriptionId, caller: AdminCaller, upstream: Upstream
) -> Response:
    await _call(upstream, "DeleteSubscription", pb.DeleteSubscriptionRequest(id=subscriptionId))
    return Response(status_code=204)


@router.post(
    "/{subscriptionId}/rotate-secret",
    summary="A new signing secret; the old one signs too for overlapSeconds (admin)",
)
async def rotate_secret(
    subscriptionId: SubscriptionId,
    caller: AdminCaller,
    upstream: Upstream,
    body: Rotation | None = None,
) -> Subscription:
    overlap = (body or Rotation()).overlapSeconds
    message = pb.RotateSecretRequest(id=subscriptionId, overlap_seconds=overlap)
    return subscription_of(await _call(upstream, "RotateSecret", message))


@router.get("/{subscriptionId}/deliveries", summary="A subscription's deliveries (admin)")
async def list_deliveries(
    subscriptionId: SubscriptionId,
    caller: AdminCaller,
    upstream: Upstream,
    status: Literal["pending", "delivered", "dead"] | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryList:
    message = pb.ListDeliveriesRequest(
        subscription_id=subscriptionId, status=status or "", cursor=cursor or "", limit=limit
    )
    reply: pb.ListDeliveriesReply = await _call(upstream, "ListDeliveries", message)
    return DeliveryList(
        items=[delivery_of(d) for d in reply.deliveries], nextCursor=reply.next_cursor or None
    )


@router.post(
    "/deliveries/{deliveryId}/redrive",
    summary="Send a dead (or delivered) delivery again, under its webhook-id (admin)",
)
async def redrive_delivery(
    deliveryId: Annotated[str, Path(min_length=1, max_length=200)],
    caller: AdminCaller,
    upstream: Upstream,
) -> Delivery:
    message = pb.RedriveDeliveryRequest(id=deliveryId)
    return delivery_of(await _call(upstream, "RedriveDelivery", message))
