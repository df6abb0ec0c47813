"""Dead letters: kept in the consuming service's own database with their error.

One implementation serves the operator everywhere: ``mercato dlq`` (reading each service's
database) and the admin routes (through each service's ``Operations`` gRPC API, which calls
these functions on its own database). A letter's public id names its service
(``inventory.0190…``), so a route or a command given only the id knows where it lives.

A letter is ``open`` until it is redriven (handled again through the inbox, so it cannot
take effect twice) or discarded with a reason; a discarded letter is kept and listed, never
deleted. In the table, ``open`` is ``dead``, or ``redrive`` / ``redriving`` while a redrive
asked for by ``mercato dlq redrive`` waits for, or is in, the owning service's ``Redriver``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Row, and_, bindparam, func, or_, select, update

from mercato.platform.envelope import Envelope, EnvelopeError
from mercato.platform.inbox import InboxConsumer, prefix_of
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import dead_letters, outbox

log = structlog.get_logger(__name__)

DEAD, REDRIVE, REDRIVING, REDRIVEN, DISCARDED = (
    "dead",
    "redrive",
    "redriving",
    "redriven",
    "discarded",
)
OPEN = "open"
# The statuses an operator sees, and the rows' statuses each stands for.
SHOWN: dict[str, tuple[str, ...]] = {
    OPEN: (DEAD, REDRIVE, REDRIVING),
    REDRIVEN: (REDRIVEN,),
    DISCARDED: (DISCARDED,),
}
MAX_REASON = 500


class NotOpen(Exception):
    """The letter is redriven or discarded already: there is nothing left to do to it."""


def shown_status(status: str) -> str:
    return next((shown for shown, rows in SHOWN.items() if status in rows), status)


def public_id(service: str, letter_id: str) -> str:
    return f"{service}.{letter_id}"


def parse_id(text: str) -> tuple[str | None, str]:
    """(service or None, the letter's id in that service's database) from a public id; a
    bare id (``mercato dlq`` showed those before) names no service."""
    service, dot, letter_id = text.partition(".")
    return (service, letter_id) if dot and service and letter_id else (None, text)


@dataclass(frozen=True)
class Cursor:
    """Where a page of letters (newest failure first) ended: its last letter's failure and id."""

    failed_at: datetime
    letter_id: str


async def list_dead_letters(
    db: Database,
    *,
    status: str | None = None,
    event_type: str | None = None,
    limit: int | None = None,
    before: Cursor | None = None,
) -> Sequence[Row[Any]]:
    """The letters, newest failure first (ties by id), ``status`` one of ``SHOWN``'s keys."""
    query = select(dead_letters).order_by(dead_letters.c.failed_at.desc(), dead_letters.c.id.desc())
    if status is not None:
        query = query.where(dead_letters.c.status.in_(SHOWN[status]))
    if event_type is not None:
        query = query.where(dead_letters.c.event_type == event_type)
    if before is not None:
        query = query.where(
            or_(
                dead_letters.c.failed_at < before.failed_at,
                and_(
                    dead_letters.c.failed_at == before.failed_at,
                    dead_letters.c.id < before.letter_id,
                ),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    async with db.connect() as conn:
        return (await conn.execute(query)).all()


async def find_dead_letter(db: Database, letter_id: str) -> Row[Any] | None:
    async with db.connect() as conn:
        found = await conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id))
        row: Row[Any] | None = found.first()
        return row


def readable(data: bytes | str) -> str:
    """A dead letter's body or field for a terminal: UTF-8 where it is, every other byte and
    every control character but newline and tab written as an escape (``\\x00``)."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def headers_of(row: Row[Any]) -> dict[str, str]:
    """A letter's headers as they came off the broker (every value a string)."""
    headers: dict[str, str] = json.loads(row.headers)
    return headers


def envelope_of(headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
    """The letter's event as a structured CloudEvent; None when the message is not one (a
    malformed message is dead-lettered for that very reason)."""
    try:
        return Envelope.from_binary(headers, body, prefix_of(headers)).to_structured()
    except (EnvelopeError, ValueError, TypeError):
        return None


async def request_redrive(db: Database, letter_id: str | None) -> int:
    """Mark one dead letter (or all, with None) for redrive by the service's ``Redriver``;
    return how many were marked."""
    query = update(dead_letters).where(dead_letters.c.status == DEAD).values(status=REDRIVE)
    if letter_id is not None:
        query = query.where(dead_letters.c.id == letter_id)
    async with db.begin() as conn:
        return (await conn.execute(query)).rowcount


async def redrive_now(db: Database, consumer: InboxConsumer, letter_id: str) -> Row[Any] | None:
    """Handle one open letter again, now; the letter afterwards (``redriven``, or ``dead`` with
    the new error). None for an unknown letter; ``NotOpen`` when it is redriven, discarded or
    being redriven by someone else at this moment. A letter of another redriver of the
    service (notification's mail) is marked for it, as ``mercato dlq redrive`` does, and taken
    within its poll interval."""
    found = await find_dead_letter(db, letter_id)
    if found is not None and found.consumer != consumer.name:
        if not await request_redrive(db, letter_id):
            raise NotOpen(f"the dead letter is {_state(found.status)}")
        return await find_dead_letter(db, letter_id)
    async with db.begin() as conn:
        claimed = await conn.execute(_CLAIM_OPEN, {"letter": letter_id})
    if claimed.rowcount != 1:
        found = await find_dead_letter(db, letter_id)
        if found is None:
            return None
        raise NotOpen(f"the dead letter is {_state(found.status)}")
    found = await find_dead_letter(db, letter_id)
    assert found is not None
    await _redrive_claimed(db, consumer, found)
    return await find_dead_letter(db, letter_id)


def _state(status: str) -> str:
    return "being redriven" if status in (REDRIVE, REDRIVING) else status


async def discard(db: Database, letter_id: str, reason: str) -> Row[Any] | None:
    """Mark an open letter discarded with ``reason`` (kept, never deleted); the letter
    afterwards. None for an unknown letter; ``NotOpen`` when it is not open (a redrive
    running at this moment included: one conditional update decides)."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValueError(f"a reason of 1 to {MAX_REASON} characters is required")
    query = (
        update(dead_letters)
        .where(dead_letters.c.id == letter_id, dead_letters.c.status.in_((DEAD, REDRIVE)))
        .values(status=DISCARDED, discard_reason=reason, discarded_at=datetime.now(UTC))
    )
    async with db.begin() as conn:
        changed = (await conn.execute(query)).rowcount
    found = await find_dead_letter(db, letter_id)
    if found is not None and changed != 1:
        raise NotOpen(f"the dead letter is {_state(found.status)}")
    return found


async def count_dead(db: Database) -> int:
    """The open letters."""
    async with db.connect() as conn:
        value = await conn.scalar(
            select(func.count())
            .select_from(dead_letters)
            .where(dead_letters.c.status.in_(SHOWN[OPEN]))
        )
        return int(value or 0)


async def outbox_backlog(db: Database) -> tuple[int, float]:
    """(events written but not yet confirmed sent, age in seconds of the oldest of them)."""
    query = select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.sent_at.is_(None))
    async with db.connect() as conn:
        count, oldest = (await conn.execute(query)).one()
    if not count or oldest is None:
        return 0, 0.0
    if oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    return int(count), max(0.0, (datetime.now(UTC) - oldest).total_seconds())


# Polled every few seconds by every service: built once.
_TO_REDRIVE = (
    select(dead_letters)
    .where(dead_letters.c.status == REDRIVE, dead_letters.c.consumer == bindparam("consumer"))
    .limit(100)
)
_CLAIM = (
    update(dead_letters).where(dead_letters.c.id == bindparam("letter")).values(status=REDRIVING)
)
_CLAIM_MARKED = _CLAIM.where(dead_letters.c.status == REDRIVE)
_CLAIM_OPEN = _CLAIM.where(dead_letters.c.status.in_((DEAD, REDRIVE)))


class Redrivable(Protocol):
    """What takes a dead letter back: an ``InboxConsumer``, or a service's own (notification's
    mail), each for the rows of its ``name``."""

    @property
    def name(self) -> str: ...

    async def redrive(self, row: Any) -> str | None: ...


async def _redrive_claimed(db: Database, consumer: Redrivable, row: Row[Any]) -> bool:
    """Hand a letter this caller claimed (``redriving``) to the consumer; record the outcome."""
    error = await consumer.redrive(row)
    now = datetime.now(UTC)
    values: dict[str, Any] = (
        {"status": REDRIVEN, "redriven_at": now}
        if error is None
        else {"status": DEAD, "error": error, "attempts": row.attempts + 1, "failed_at": now}
    )
    async with db.begin() as conn:
        await conn.execute(update(dead_letters).where(dead_letters.c.id == row.id).values(**values))
    return error is None


class Redriver:
    """Redrives what ``mercato dlq redrive`` (another process) marked: it looks every
    ``poll_interval`` seconds, an operator's action needs no faster answer."""

    def __init__(self, db: Database, consumer: Redrivable, poll_interval: float = 5.0):
        self.db = db
        self.consumer = consumer
        self.poll_interval = poll_interval

    async def run(self) -> None:
        while True:
            try:
                await self.redrive_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redrive failed", consumer=self.consumer.name, error=str(exc))
            await asyncio.sleep(self.poll_interval)

    async def redrive_once(self) -> int:
        async with self.db.connect() as conn:
            rows = (await conn.execute(_TO_REDRIVE, {"consumer": self.consumer.name})).all()
        done = 0
        for row in rows:
            async with self.db.begin() as conn:
                claimed = await conn.execute(_CLAIM_MARKED, {"letter": row.id})
            if claimed.rowcount != 1:
                continue  # another replica took it
            done += await _redrive_claimed(self.db, self.consumer, row)
        return done
