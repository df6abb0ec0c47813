"""Mail that could not go, kept as dead letters beside the consumer's own (the platform's
``dead_letters`` table, consumer ``notification.mail``), so ``mercato dlq`` and the admin
routes show them with their error; a redrive queues them again.

Two kinds: a request no one could be found for (``stage: compose``; the body is the event's
payload), and a mail that failed every attempt or whose hand-over was cut (``stage: send``; the
body is the message as it would go). Redriving a mail makes it pending again — for a cut
hand-over that is the operator's decision that a second copy is better than none.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection, Database
from mercato.platform.storage.tables import dead_letters
from mercato.services.notification.domain import MailStatus
from mercato.services.notification.tables import notifications, requests

CONSUMER = "notification.mail"


async def _keep(
    conn: Connection,
    headers: dict[str, str],
    body: bytes,
    error: str,
    attempts: int,
    now: datetime,
    event_id: str,
    event_type: str,
) -> None:
    row = {
        "id": new_id(),
        "consumer": CONSUMER,
        "event_id": event_id[:64],
        "event_type": event_type[:100],
        "headers": json.dumps(headers),
        "body": body,
        "error": error,
        "attempts": attempts,
        "status": "dead",
        "failed_at": now,
    }
    await conn.execute(dead_letters.insert(), row)


async def keep_request(conn: Connection, row: Any, error: str, now: datetime) -> None:
    headers = {"stage": "compose", "kind": row.kind, "eventId": row.event_id}
    await _keep(
        conn, headers, row.data.encode(), error, row.attempts + 1, now, row.event_id, row.kind
    )


async def keep_mail(
    conn: Connection, row: Any, body: bytes, error: str, now: datetime, attempts: int
) -> None:
    headers = {"stage": "send", "kind": row.kind, "notificationId": row.id, "eventId": row.event_id}
    await _keep(conn, headers, body, error, attempts, now, row.event_id, row.kind)


class MailRedrive:
    """The ``redrive`` the platform's ``Redriver`` calls for this consumer's dead letters."""

    name = CONSUMER

    def __init__(self, db: Database):
        self.db = db

    async def redrive(self, letter: Any) -> str | None:
        headers = json.loads(letter.headers)
        now = datetime.now(UTC)
        async with self.db.begin() as conn:
            if headers.get("stage") == "send":
                await conn.execute(
                    update(notifications)
                    .where(
                        notifications.c.id == headers["notificationId"],
                        notifications.c.mail_status.in_(
                            [MailStatus.DEAD.value, MailStatus.UNKNOWN.value]
                        ),
                    )
                    .values(
                        mail_status=MailStatus.PENDING.value,
                        attempts=0,
                        not_before=now,
                        claim=None,
                        claimed_until=None,
                    )
                )
                return None
            row = {
                "event_id": headers["eventId"],
                "kind": headers["kind"],
                "data": bytes(letter.body).decode(),
                "received_at": now,
                "attempts": 0,
                "not_before": now,
            }
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            await conn.execute(insert(requests).values(row).on_conflict_do_nothing())
        return None
