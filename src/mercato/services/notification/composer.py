"""The composer: turns the requests the handlers noted into notifications — one per recipient,
rendered, in the inbox, its mail queued — in transactions of its own, off the consumer's path.

Who and what: an order's news goes to the order's owner (the event's ``userId``, or the owner
``OrderCreated`` named) with the order's items and totals; stock news goes to every admin
known. A request whose order or user is not known yet waits (``domain.WAIT_FOR_FACTS``), then
is composed with what is known; one with no one to tell becomes a dead letter.

Replicas: each takes requests with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's
transactions hold the write lock from their start), so two never compose the same request;
and a notification is unique per (event, recipient), so even a request composed twice (a
redrive, a replay) never makes a second one.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import NotificationSent
from mercato.platform.ids import new_id
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.notification import facts, mail, outcasts, templates
from mercato.services.notification.domain import KINDS, WAIT_FOR_FACTS, Audience, MailStatus
from mercato.services.notification.facts import Order, User
from mercato.services.notification.tables import notifications, requests

log = structlog.get_logger(__name__)

BATCH = 50


class Waiting(Exception):
    """What the request needs is not known yet."""


class Unrenderable(Exception):
    """Its template failed on what the event holds: a dead letter at once."""


async def compose_due(ctx: ServiceContext, now: datetime | None = None) -> int:
    """Compose the requests that are due; returns how many were taken."""
    now = now or datetime.now(UTC)
    query = (
        select(requests)
        .where(requests.c.not_before <= now)
        .order_by(requests.c.not_before)
        .limit(BATCH)
    )
    # A read first: most rounds find nothing, and a read takes no write lock.
    async with ctx.db.connect() as conn:
        if (await conn.execute(query.with_only_columns(requests.c.event_id))).first() is None:
            return 0
    async with ctx.transaction() as uow:
        if uow.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = (await uow.conn.execute(query)).all()
        for row in rows:
            try:
                await _compose(ctx, uow, row, now)
            except Unrenderable as exc:
                await outcasts.keep_request(uow.conn, row, str(exc), now)
            except Waiting as waiting:
                retry = WAIT_FOR_FACTS.next_try(row.attempts + 1, now)
                if retry is not None:
                    await uow.conn.execute(
                        update(requests)
                        .where(requests.c.event_id == row.event_id)
                        .values(attempts=row.attempts + 1, not_before=retry)
                    )
                    continue
                await outcasts.keep_request(uow.conn, row, str(waiting), now)
            await uow.conn.execute(delete(requests).where(requests.c.event_id == row.event_id))
    return len(rows)


async def _compose(ctx: ServiceContext, uow: UnitOfWork, row: Any, now: datetime) -> None:
    conn = uow.conn
    kind = KINDS[row.kind]
    event: dict[str, Any] = json.loads(row.data)
    patient = row.attempts + 1 < WAIT_FOR_FACTS.attempts  # False: use what is known
    order: Order | None = None
    product: str | None = None
    if kind.audience is Audience.ADMINS:
        recipients = await facts.admins(conn)
        if not recipients:
            raise Waiting("no admin is known (identity's UserRolesUpdated)")
        names = await facts.product_names(conn, [event["productId"]])
        product = names.get(event["productId"])
    else:
        order_id = event.get("orderId")
        if kind.needs_order and order_id:
            order = await facts.order(conn, order_id)
            if order is None and patient:
                raise Waiting(f"order {order_id} is not known (its OrderCreated)")
        user_id = event.get("userId") or (order.user_id if order is not None else None)
        if user_id is None:
            raise Waiting(f"no one to tell: the owner of order {order_id} is not known")
        found = await facts.user(conn, user_id)
        if found is None and patient:
            raise Waiting(f"user {user_id} is not known (its UserCreated)")
        recipients = [found or User(user_id, None, None)]
    for user in recipients:
        try:
            words = templates.render(kind, user, event, order, product)
        except Exception as exc:
            raise Unrenderable(f"template {kind.name}: {type(exc).__name__}: {exc}") from exc
        await _add(ctx, uow, row.event_id, kind.name, user, words, now)


_ADD = {
    "postgresql": postgresql.insert(notifications).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(notifications).on_conflict_do_nothing(),
}


async def _add(
    ctx: ServiceContext,
    uow: UnitOfWork,
    event_id: str,
    kind: str,
    user: User,
    words: templates.Rendered,
    now: datetime,
) -> None:
    notification_id = new_id()
    row = {
        "id": notification_id,
        "event_id": event_id,
        "user_id": user.user_id,
        "kind": kind,
        "subject": words.subject,
        "text": words.text,
        "html": words.html,
        "email": user.email,
        "to_name": user.name,
        "message_id": mail.message_id_for(notification_id, ctx.settings.smtp_from),
        "created_at": now,
        "mail_status": (MailStatus.PENDING if user.email else MailStatus.NONE).value,
        "attempts": 0,
        "not_before": now,
    }
    # A second one for the same (event, recipient) is skipped by the unique key.
    added = await uow.conn.execute(_ADD[uow.conn.dialect.name], row)
    if added.rowcount == 1 and not user.email:  # inbox only: told once it is there
        told = NotificationSent(
            notificationId=notification_id, userId=user.user_id, channel="inbox", template=kind
        )
        uow.publish(told, subject=user.user_id)


async def composer(ctx: ServiceContext) -> None:
    """The service's task: compose what is due, every ``pause`` seconds (at once again while
    there is more)."""
    pause = 0.2
    while True:
        try:
            taken = await compose_due(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is briefly away: the next round tries again
            log.warning("the composer could not compose", error=str(exc))
            taken = 0
        if taken < BATCH:
            await asyncio.sleep(pause)
