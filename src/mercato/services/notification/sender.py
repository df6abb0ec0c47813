"""The sender: mails the notifications whose mail is pending, in the service's own task.

Never two mails for one notification (one per event and recipient): the send is recorded
before the message goes, so a crash anywhere leaves a record that says how far it got —

1. **claim** (committed): ``pending → claimed`` for a batch, by one conditional update
   naming this sender's token (the rows picked ``FOR UPDATE SKIP LOCKED``); of two replicas
   only one gets each row. A claim that outlives its lease (its sender
   died before handing anything over) goes back to pending: nothing was sent.
2. **hand-over** (committed, once the server has taken sender and recipient, just before the
   message itself): ``claimed → sending``, again only under this sender's token.
3. **sent** (committed with NotificationSent in the outbox).

Where sending twice leaves one copy (the ``.eml`` files: ``Transport.idempotent``), step 2 is
skipped and a batch's sends are recorded in one transaction.

A mail still ``sending`` after its lease was cut in the middle of the hand-over: the server
may or may not have it, and nothing on our side can tell. It is not sent again by itself: it
becomes ``unknown`` and a dead letter, and an operator may redrive it (a copy they chose).
The Message-ID is fixed when the notification is made, so a receiving side that deduplicates
by it sees one message even then. A refusal the server answered (4xx, or a connection that
failed before the hand-over) is retried with backoff; a permanent refusal (5xx), or the last
attempt, makes a dead letter.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from mercato.contracts.events import NotificationSent
from mercato.platform.ids import new_id
from mercato.platform.runtime.service import ServiceContext
from mercato.services.notification import mail, outcasts
from mercato.services.notification.domain import Backoff, MailStatus
from mercato.services.notification.mail import HandOverCut, NotHandedOver, Overtaken, Transport
from mercato.services.notification.tables import notifications

log = structlog.get_logger(__name__)

BATCH = 20
TRANSPORT = "notification.transport"  # in ctx.extras
n = notifications.c


def transport_of(ctx: ServiceContext) -> Transport:
    found = ctx.extras.get(TRANSPORT)
    if found is None:
        found = ctx.extras[TRANSPORT] = mail.transport_for(ctx.settings)
    return found


def backoff_of(ctx: ServiceContext) -> Backoff:
    s = ctx.settings
    return Backoff(attempts=s.mail_max_attempts, base=s.mail_retry_base_delay)


def lease_of(ctx: ServiceContext) -> timedelta:
    """How long a claim holds: a connection, STARTTLS, login and the message, each bounded
    by the SMTP timeout, with room to spare."""
    return timedelta(seconds=ctx.settings.smtp_timeout * 6 + 30)


async def send_due(ctx: ServiceContext, now: datetime | None = None) -> int:
    """Claim the mails that are due (a batch, in one statement) and send them; returns how
    many were claimed."""
    now = now or datetime.now(UTC)
    transport = transport_of(ctx)
    token = new_id()
    due = (
        select(n.id)
        .where(n.mail_status == MailStatus.PENDING.value, n.not_before <= now)
        .order_by(n.not_before)
        .limit(BATCH)
    )
    # A read first: most rounds find nothing, and a read takes no write lock.
    async with ctx.db.connect() as conn:
        if (await conn.execute(due)).first() is None:
            return 0
    async with ctx.db.begin() as conn:
        if conn.dialect.name == "postgresql":  # replicas take different rows, none waits
            due = due.with_for_update(skip_locked=True)
        claimed = (
            await conn.execute(
                update(notifications)
                .where(n.id.in_(due.scalar_subquery()))
                .where(n.mail_status == MailStatus.PENDING.value)
                .values(
                    mail_status=MailStatus.CLAIMED.value,
                    claim=token,
                    claimed_until=now + lease_of(ctx),
                    attempts=n.attempts + 1,
                )
                .returning(*notifications.c)
            )
        ).all()
    delivered: list[Any] = []
    for row in sorted(claimed, key=lambda r: r.not_before):
        if await _deliver(ctx, transport, row, token):
            delivered.append(row)
            # Recorded at once where sending twice would send two; a file written twice is
            # one file, so there one transaction records the batch.
            if not transport.idempotent:
                await _record_sent(ctx, transport, delivered, token)
                delivered = []
    await _record_sent(ctx, transport, delivered, token)
    return len(claimed)


async def recover(ctx: ServiceContext, now: datetime) -> None:
    """Claims whose sender is gone: back to pending if nothing was handed over (or the
    transport may repeat itself), else ``unknown`` and a dead letter."""
    idempotent = transport_of(ctx).idempotent
    async with ctx.db.begin() as conn:
        await conn.execute(
            update(notifications)
            .where(n.mail_status == MailStatus.CLAIMED.value, n.claimed_until < now)
            .values(mail_status=MailStatus.PENDING.value, claim=None, not_before=now)
        )
        cut = (
            await conn.execute(
                select(notifications).where(
                    n.mail_status == MailStatus.SENDING.value, n.claimed_until < now
                )
            )
        ).all()
        for row in cut:
            to = MailStatus.PENDING if idempotent else MailStatus.UNKNOWN
            moved = await conn.execute(
                update(notifications)
                .where(n.id == row.id, n.claim == row.claim, n.mail_status == row.mail_status)
                .values(mail_status=to.value, not_before=now, last_error="the sender stopped")
            )
            if moved.rowcount == 1 and to is MailStatus.UNKNOWN:
                error = "the sender stopped while handing the mail over: it may have arrived"
                await outcasts.keep_mail(
                    conn, row, _message(ctx, row).as_bytes(), error, now, row.attempts
                )
                log.error("mail may or may not have arrived; kept as a dead letter", id=row.id)


def _message(ctx: ServiceContext, row: Any) -> Any:
    return mail.message_of(
        notification_id=row.id,
        message_id=row.message_id,
        kind=row.kind,
        sender=ctx.settings.smtp_from,
        to_name=row.to_name,
        to_email=row.email,
        subject=row.subject,
        text=row.text,
        html=row.html,
        created_at=row.created_at,
    )


async def _deliver(ctx: ServiceContext, transport: Transport, row: Any, token: str) -> bool:
    """Hand one claimed mail over; True if the server (or the file) has it. A failure is
    recorded here (retry, dead letter, or unknown)."""

    async def handing_over() -> bool:
        if transport.idempotent:  # a repeat leaves one copy: nothing to record first
            return True
        async with ctx.db.begin() as conn:
            moved = await conn.execute(
                update(notifications)
                .where(n.id == row.id, n.claim == token)
                .where(n.mail_status == MailStatus.CLAIMED.value)
                .values(mail_status=MailStatus.SENDING.value)
            )
            return bool(moved.rowcount == 1)

    message = _message(ctx, row)
    try:
        await transport.deliver(message, handing_over)
    except Overtaken:
        return False
    except NotHandedOver as exc:
        await _failed(ctx, row, token, message.as_bytes(), str(exc), retry=not exc.permanent)
        return False
    except HandOverCut as exc:
        if transport.idempotent:
            await _failed(ctx, row, token, message.as_bytes(), str(exc), retry=True)
        else:
            await _cut(ctx, row, token, message.as_bytes(), str(exc))
        return False
    return True


async def _record_sent(
    ctx: ServiceContext, transport: Transport, rows: list[Any], token: str
) -> None:
    """Mark ``rows`` sent and publish NotificationSent for each, in one transaction."""
    if not rows:
        return
    async with ctx.transaction() as uow:
        done = await uow.conn.execute(
            update(notifications)
            .where(n.id.in_([r.id for r in rows]), n.claim == token)
            .values(mail_status=MailStatus.SENT.value, sent_at=datetime.now(UTC), last_error=None)
            .returning(n.id)
        )
        recorded = {found.id for found in done}
        for row in rows:
            if row.id in recorded:
                told = NotificationSent(
                    notificationId=row.id,
                    userId=row.user_id,
                    channel=transport.channel,
                    template=row.kind,
                )
                uow.publish(told, subject=row.user_id)
    log.debug("mail sent", count=len(recorded), channel=transport.channel)


async def _failed(
    ctx: ServiceContext, row: Any, token: str, body: bytes, error: str, *, retry: bool
) -> None:
    now = datetime.now(UTC)
    attempt = row.attempts  # read after the claim, which counted this one
    later = backoff_of(ctx).next_try(attempt, now) if retry else None
    async with ctx.db.begin() as conn:
        status = MailStatus.PENDING if later is not None else MailStatus.DEAD
        moved = await conn.execute(
            update(notifications)
            .where(n.id == row.id, n.claim == token)
            .values(mail_status=status.value, not_before=later, claim=None, last_error=error)
        )
        if later is not None:
            log.warning("mail not sent; will retry", id=row.id, attempt=attempt, error=error)
        elif moved.rowcount == 1:
            await outcasts.keep_mail(conn, row, body, error, now, attempt)
            log.error("mail not sent; kept as a dead letter", id=row.id, error=error)


async def _cut(ctx: ServiceContext, row: Any, token: str, body: bytes, error: str) -> None:
    now = datetime.now(UTC)
    async with ctx.db.begin() as conn:
        moved = await conn.execute(
            update(notifications)
            .where(n.id == row.id, n.claim == token)
            .values(mail_status=MailStatus.UNKNOWN.value, last_error=error)
        )
        if moved.rowcount == 1:
            why = f"the hand-over was cut ({error}): the mail may have arrived; not resent"
            await outcasts.keep_mail(conn, row, body, why, now, row.attempts)
            log.error("mail may or may not have arrived; kept as a dead letter", id=row.id)


RECOVER_EVERY = 2.0  # seconds between looks for claims whose sender is gone


async def sender(ctx: ServiceContext) -> None:
    """The service's task: send what is due, every ``pause`` seconds (at once again while
    there is more); every ``RECOVER_EVERY`` seconds, first recover what a crash left."""
    pause = 0.2
    recovered_at = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            if loop.time() - recovered_at >= RECOVER_EVERY:
                await recover(ctx, datetime.now(UTC))
                recovered_at = loop.time()
            tried = await send_due(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is briefly away: the next round tries again
            log.warning("the sender could not send", error=str(exc))
            tried = 0
        if tried < BATCH:
            await asyncio.sleep(pause)
