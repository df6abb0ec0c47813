"""A unit of work: one database transaction holding a state change and the events it causes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from mercato.contracts.events import Payload
from mercato.platform import tracing
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.storage.sql import Connection, Database
from mercato.platform.storage.tables import outbox

ADD_TO_OUTBOX = outbox.insert().returning(outbox.c.seq, outbox.c.event_id)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An outbox row as the transaction that wrote it knows it, handed to the relay once the
    transaction has committed: its place in the outbox, its topic and its event."""

    seq: int
    topic: str
    envelope: Envelope


Committed = Callable[[Sequence[Outgoing]], None]


def new_traceparent(trace_id: str | None = None) -> str:
    """W3C trace context: keep the trace, start a new span (parent id)."""
    return f"00-{trace_id or os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class UnitOfWork:
    """Handed to every handler and request: ``conn`` for state, ``publish`` for events.

    Events go to the outbox in the same transaction as the state, never to the broker
    directly; the relay sends them after commit.
    """

    def __init__(self, conn: Connection, service: str, cause: Envelope | None = None):
        self.conn = conn
        self.service = service
        self.cause = cause
        self.events: list[Envelope] = []
        self.outgoing: list[Outgoing] = []  # the outbox rows written, in order
        self.committed: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (never if it rolls back)."""
        self.committed.append(callback)

    def publish(
        self, payload: Payload, subject: str | None = None, *, correlationid: str | None = None
    ) -> Envelope:
        cause = self.cause
        envelope = Envelope(
            type=type(payload).__name__,
            source=f"mercato/{self.service}",
            data=payload.dump(),
            subject=subject,
            correlationid=correlationid or (cause.correlationid if cause else None) or subject,
            causationid=cause.id if cause else None,
            traceparent=None,
        )
        otel = tracing.otel
        if otel is None:
            traceparent = new_traceparent(trace_id_of(cause.traceparent) if cause else None)
        else:  # the creation context (see mercato.platform.otel)
            traceparent = otel.created(self.service, envelope, topic_of(envelope), cause)
        # Set here, not given above: the ``create`` span needs the envelope's other fields.
        object.__setattr__(envelope, "traceparent", traceparent)
        self.events.append(envelope)
        return envelope

    async def write_outbox(self) -> None:
        if not self.events:
            return
        now = datetime.now(UTC)
        topics = [topic_of(e) for e in self.events]
        written = await self.conn.execute_last(
            ADD_TO_OUTBOX,
            [
                {
                    "event_id": e.id,
                    "aggregate": e.subject,
                    "event_type": e.type,
                    "topic": topic,
                    "envelope": e.to_json(),
                    "created_at": now,
                }
                for e, topic in zip(self.events, topics, strict=True)
            ],
        )
        # Matched by event id: a multi-row INSERT's RETURNING promises no order.
        seqs = {event_id: seq for seq, event_id in written.all()}
        self.outgoing = sorted(
            (Outgoing(seqs[e.id], topic, e) for e, topic in zip(self.events, topics, strict=True)),
            key=lambda row: row.seq,
        )


@asynccontextmanager
async def transaction(
    db: Database,
    service: str,
    cause: Envelope | None = None,
    on_events: Committed | None = None,
) -> AsyncIterator[UnitOfWork]:
    """Commit the work and its outbox rows together; then hand the rows to ``on_events``
    (the relay's ``committed``) and run the ``after_commit`` callbacks."""
    otel = tracing.otel
    if otel is None:
        async with db.begin() as conn:
            uow = UnitOfWork(conn, service, cause)
            yield uow
            await uow.write_outbox()
    else:  # the same, inside a span counting its statements
        span = otel.Transaction(service, db.name)
        statements = 0
        try:
            async with db.begin() as conn:
                first = conn.statements
                try:
                    uow = UnitOfWork(conn, service, cause)
                    yield uow
                    await uow.write_outbox()
                finally:
                    statements = conn.statements - first
        except BaseException as error:
            span.end(statements, error)
            raise
        span.end(statements, None)
    if uow.outgoing and on_events is not None:
        on_events(uow.outgoing)
    for callback in uow.committed:
        callback()
