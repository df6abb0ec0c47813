"""audit's store: append events once, read them back (filtered pages, newest first; an order's
story; oldest first for export and replay; in append order for ``tail --follow``), prune.

Pages are keyset pages on (time, event_id): the cursor is the last row's pair, so a page stays
right while events are appended (an event that comes late with an older time lands in its
place, never twice on the pages).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.envelope import Envelope
from mercato.platform.storage.sql import Connection, Database
from mercato.services.audit.tables import events

MAX_PAGE = 500


class BadQuery(ValueError):
    """A filter or cursor that cannot be read (an INVALID_ARGUMENT / 422)."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    type: str | None = None
    subject: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if self.type:
            where.append(events.c.type == self.type)
        if self.subject:
            where.append(events.c.subject == self.subject)
        if self.correlation_id:
            where.append(events.c.correlation_id == self.correlation_id)
        if self.since is not None:
            where.append(events.c.time >= self.since)
        if self.until is not None:
            where.append(events.c.time < self.until)
        return where


def parse_time(text: str | None, name: str) -> datetime | None:
    """An RFC 3339 time with its zone (``2026-12-07T14:00:00Z``), or None for empty."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name}: not an RFC 3339 time ({text!r})") from None
    if moment.tzinfo is None:
        raise BadQuery(f"{name}: give the time zone (e.g. 2026-12-07T14:00:00Z)")
    return moment.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back what it stored without the zone: every time here is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def encode_cursor(moment: datetime, event_id: str) -> str:
    text = f"{_utc(moment).isoformat()}|{event_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, event_id = text.partition("|")
        when = datetime.fromisoformat(moment)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadQuery("cursor: not a cursor this API gave") from None
    if not event_id or when.tzinfo is None:
        raise BadQuery("cursor: not a cursor this API gave")
    return when, event_id


# Built once per dialect: the statement every batch runs.
_APPEND = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(events).on_conflict_do_nothing(
        index_elements=[events.c.event_id]
    )
    for dialect in (postgresql, sqlite)
}


async def append(conn: Connection, batch: Sequence[Envelope], now: datetime) -> None:
    """One statement for the batch. The consumer's inbox already dropped what it had seen;
    the unique event id is the second guard (an event sent again under a new consumer name,
    or two replicas racing past a pruned inbox)."""
    if not batch:
        return
    await conn.execute(
        _APPEND["postgresql" if conn.dialect.name == "postgresql" else "sqlite"],
        [
            {
                "event_id": e.id,
                "type": e.type,
                "source": e.source,
                "subject": e.subject,
                "correlation_id": e.correlationid,
                "causation_id": e.causationid,
                "time": e.time,
                "recorded_at": now,
                "envelope": e.to_json(),
            }
            for e in batch
        ],
    )


async def newest_first(
    conn: Connection, where: EventFilter, cursor: str | None, limit: int
) -> tuple[list[str], str | None]:
    """A page of envelopes (JSON), newest first, and the cursor of the next page (None: the
    last page)."""
    limit = max(1, min(limit, MAX_PAGE))
    clauses = where.clauses()
    if cursor:
        moment, event_id = decode_cursor(cursor)
        clauses.append(
            sa.or_(
                events.c.time < moment,
                sa.and_(events.c.time == moment, events.c.event_id < event_id),
            )
        )
    query = (
        sa.select(events.c.time, events.c.event_id, events.c.envelope)
        .where(*clauses)
        .order_by(events.c.time.desc(), events.c.event_id.desc())
        .limit(limit + 1)
    )
    rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    following = encode_cursor(rows[-1].time, rows[-1].event_id) if more and rows else None
    return [row.envelope for row in rows], following


async def oldest_first(
    db: Database, where: EventFilter, chunk: int = 500
) -> AsyncIterator[list[Envelope]]:
    """Every matching event in time order, ``chunk`` at a time, each chunk read in its own
    short transaction (an export of millions holds no snapshot open)."""
    after: tuple[datetime, str] | None = None
    while True:
        clauses = where.clauses()
        if after is not None:
            clauses.append(
                sa.or_(
                    events.c.time > after[0],
                    sa.and_(events.c.time == after[0], events.c.event_id > after[1]),
                )
            )
        query = (
            sa.select(events.c.time, events.c.event_id, events.c.envelope)
            .where(*clauses)
            .order_by(events.c.time, events.c.event_id)
            .limit(chunk)
        )
        async with db.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        yield [Envelope.from_json(row.envelope) for row in rows]
        if len(rows) < chunk:
            return
        after = (rows[-1].time, rows[-1].event_id)


async def appended_after(
    conn: Connection, where: EventFilter, seq: int, limit: int = 500
) -> list[tuple[int, Envelope]]:
    """What was appended after ``seq``, in append order (``tail --follow``)."""
    query = (
        sa.select(events.c.seq, events.c.envelope)
        .where(events.c.seq > seq, *where.clauses())
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [(row.seq, Envelope.from_json(row.envelope)) for row in await conn.execute(query)]


async def last_seq(conn: Connection) -> int:
    return int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0))) or 0)


async def order_story(conn: Connection, order_id: str) -> list[Envelope]:
    """Every event of one order, oldest first: those correlated with it (the saga's, from the
    checkout on) and those about it (its subject)."""
    query = (
        sa.select(events.c.envelope)
        .where(sa.or_(events.c.correlation_id == order_id, events.c.subject == order_id))
        .order_by(events.c.time, events.c.seq)
    )
    return [Envelope.from_json(text) for text in (await conn.scalars(query)).all()]


async def prune(db: Database, older_than: datetime, chunk: int = 5000) -> int:
    """Delete the events whose time is before ``older_than``, ``chunk`` rows a transaction
    (no long lock on the table the consumer appends to); returns how many went."""
    removed = 0
    while True:
        oldest = (
            sa.select(events.c.seq)
            .where(events.c.time < older_than)
            .order_by(events.c.seq)
            .limit(chunk)
        )
        async with db.begin() as conn:
            gone = (await conn.execute(events.delete().where(events.c.seq.in_(oldest)))).rowcount
        removed += gone
        if gone < chunk:
            return removed
