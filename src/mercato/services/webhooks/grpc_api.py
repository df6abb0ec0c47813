"""webhooks' gRPC API (admin only): subscriptions, their deliveries, redrives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.webhooks.v1 import webhooks_pb2 as pb
from mercato.api.webhooks.v1 import webhooks_pb2_grpc
from mercato.contracts.events import REGISTRY
from mercato.platform.auth import require_caller
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.webhooks import store
from mercato.services.webhooks.domain import (
    DEAD,
    DELIVERED,
    PENDING,
    SubscriptionError,
    event_types,
    new_secret,
)
from mercato.services.webhooks.handlers import waker
from mercato.services.webhooks.targets import check_target

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE_SIZE = 100
MAX_OVERLAP = 7 * 86_400
DEFAULT_OVERLAP = 86_400


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def _when(value: Any) -> str:
    return rfc3339(value) if value is not None else ""


def subscription_reply(s: store.Subscription, secret: str = "") -> pb.Subscription:
    now = store.now_utc()
    expires = s.previous_secret_expires_at
    return pb.Subscription(
        id=s.id,
        url=s.url,
        event_types=s.event_types,
        subject=s.subject or "",
        active=s.active,
        description=s.description,
        secret=secret,
        previous_secret_expires_at=_when(expires) if expires and expires > now else "",
        circuit="open" if s.paused(now) else "closed",
        paused_until=_when(s.paused_until) if s.paused(now) else "",
        failing_since=_when(s.failing_since),
        consecutive_failures=s.consecutive_failures,
        created_at=_when(s.created_at),
        updated_at=_when(s.updated_at),
    )


def delivery_reply(d: store.Delivery) -> pb.Delivery:
    return pb.Delivery(
        id=d.id,
        subscription_id=d.subscription_id,
        event_id=d.event_id,
        event_type=d.event_type,
        subject=d.subject or "",
        status=d.status,
        attempt_count=d.attempt_count,
        next_attempt_at=_when(d.next_attempt_at) if d.status == PENDING else "",
        created_at=_when(d.created_at),
        delivered_at=_when(d.delivered_at),
        last_error=d.last_error or "",
        attempts=[
            pb.Attempt(
                at=_when(a.at),
                status_code=a.status_code or 0,
                latency_ms=a.latency_ms,
                error=a.error or "",
                response_excerpt=a.excerpt or "",
            )
            for a in d.attempts
        ],
    )


def _subject(value: str) -> str | None:
    value = value.strip()
    if len(value) > 200:
        raise SubscriptionError("subject: at most 200 characters")
    return value or None


class WebhooksApi(webhooks_pb2_grpc.WebhooksServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def _checked_url(self, url: str, context: Context) -> str:
        url = url.strip()
        try:
            await check_target(url, self.ctx.settings.webhook_allow_private_targets)
        except SubscriptionError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return url

    async def _found(self, subscription_id: str, context: Context) -> store.Subscription:
        async with self.ctx.db.connect() as conn:
            found = await store.subscription(conn, subscription_id) if subscription_id else None
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such webhook subscription")
        return found

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Context
    ) -> pb.Subscription:
        await require_caller(self.ctx, context, role="admin")
        try:
            types = event_types(list(request.event_types), REGISTRY)
            subject = _subject(request.subject)
        except SubscriptionError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        url = await self._checked_url(request.url, context)

        async def work(uow: UnitOfWork) -> pb.Subscription:
            secret = new_secret()
            made = await store.add_subscription(
                uow.conn, url, types, subject, request.active, request.description[:500], secret
            )
            return subscription_reply(made, secret)

        # The same idempotency-key and request give the first subscription (and its secret)
        # back: a client that lost the answer gets it again, not a second endpoint.
        return await grpc_run_once(
            self.ctx,
            context,
            scope="webhooks.CreateSubscription",
            request=request,
            work=work,
            decode=pb.Subscription.FromString,
        )

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Context
    ) -> pb.ListSubscriptionsReply:
        await require_caller(self.ctx, context, role="admin")
        page = max(1, request.page or 1)
        size = min(MAX_PAGE_SIZE, max(1, request.page_size or 20))
        async with self.ctx.db.connect() as conn:
            found, total = await store.page_of_subscriptions(conn, page, size)
        return pb.ListSubscriptionsReply(
            subscriptions=[subscription_reply(s) for s in found],
            page=page,
            page_size=size,
            total=total,
        )

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Context
    ) -> pb.Subscription:
        await require_caller(self.ctx, context, role="admin")
        return subscription_reply(await self._found(request.id, context))

    async def UpdateSubscription(
        self, request: pb.UpdateSubscriptionRequest, context: Context
    ) -> pb.Subscription:
        await require_caller(self.ctx, context, role="admin")
        await self._found(request.id, context)
        changes: dict[str, Any] = {}
        try:
            if request.set_event_types:
                changes["event_types"] = event_types(list(request.event_types), REGISTRY)
            if request.HasField("subject"):
                changes["subject"] = _subject(request.subject)
        except SubscriptionError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.HasField("url"):
            changes["url"] = await self._checked_url(request.url, context)
        if request.HasField("description"):
            changes["description"] = request.description[:500]
        if request.HasField("active"):
            changes["active"] = request.active
            if request.active:  # an admin turning an endpoint back on closes its circuit
                changes.update(paused_until=None, consecutive_failures=0, failing_since=None)
        async with self.ctx.db.begin() as conn:
            if not await store.change_subscription(conn, request.id, **changes):
                await abort(context, grpc.StatusCode.NOT_FOUND, "no such webhook subscription")
        self._wake()
        return subscription_reply(await self._found(request.id, context))

    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Context
    ) -> pb.DeleteSubscriptionReply:
        await require_caller(self.ctx, context, role="admin")
        async with self.ctx.db.begin() as conn:
            gone = await store.remove_subscription(conn, request.id) if request.id else False
        if not gone:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such webhook subscription")
        return pb.DeleteSubscriptionReply()

    async def RotateSecret(
        self, request: pb.RotateSecretRequest, context: Context
    ) -> pb.Subscription:
        await require_caller(self.ctx, context, role="admin")
        overlap = (
            request.overlap_seconds if request.HasField("overlap_seconds") else DEFAULT_OVERLAP
        )
        if not 0 <= overlap <= MAX_OVERLAP:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"overlapSeconds: from 0 to {MAX_OVERLAP}",
            )
        found = await self._found(request.id, context)
        secret = new_secret()
        now = store.now_utc()
        async with self.ctx.db.begin() as conn:
            await store.change_subscription(
                conn,
                found.id,
                secret=secret,
                previous_secret=found.secret,
                previous_secret_expires_at=now + timedelta(seconds=overlap),
            )
        return subscription_reply(await self._found(found.id, context), secret)

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Context
    ) -> pb.ListDeliveriesReply:
        await require_caller(self.ctx, context, role="admin")
        if request.status and request.status not in (PENDING, DELIVERED, DEAD):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "status: pending, delivered or dead"
            )
        await self._found(request.subscription_id, context)
        limit = min(MAX_PAGE_SIZE, max(1, request.limit or 20))
        async with self.ctx.db.connect() as conn:
            found, cursor = await store.deliveries_of(
                conn, request.subscription_id, request.status or None, request.cursor or None, limit
            )
        return pb.ListDeliveriesReply(
            deliveries=[delivery_reply(d) for d in found], next_cursor=cursor or ""
        )

    async def RedriveDelivery(
        self, request: pb.RedriveDeliveryRequest, context: Context
    ) -> pb.Delivery:
        await require_caller(self.ctx, context, role="admin")
        async with self.ctx.db.begin() as conn:
            found = await store.delivery(conn, request.id) if request.id else None
            if found is None:
                await abort(context, grpc.StatusCode.NOT_FOUND, "no such delivery")
            if not await store.redrive(conn, request.id, store.now_utc()):
                await abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "the delivery is still pending: it is sent without a redrive",
                )
            found = await store.delivery(conn, request.id)
        assert found is not None
        self._wake()
        return delivery_reply(found)

    def _wake(self) -> None:
        wake = waker(self.ctx.db)
        if wake is not None:
            wake()
