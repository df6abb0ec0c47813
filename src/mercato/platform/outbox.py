"""The outbox relay: publishes committed events in order, marks them sent once confirmed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import bindparam, delete, select, text, update

from mercato.platform import tracing
from mercato.platform.bus.port import EventBus
from mercato.platform.envelope import Envelope
from mercato.platform.metrics import EVENTS_PUBLISHED
from mercato.platform.storage.database import SELECT_1, advisory_key
from mercato.platform.storage.sql import Connection, Database
from mercato.platform.storage.tables import outbox
from mercato.platform.unit_of_work import Outgoing
from mercato.platform.waits import within

log = structlog.get_logger(__name__)

IDLE_POLL = 5.0  # seconds between polls at most, when nothing was found for a while
# Seconds a confirmed row may wait to be marked sent, so that one transaction marks the rows
# of several batches: at a few events per batch, marking each batch on its own was a write
# transaction per batch, about as many as the handlers' own.
MARK_AFTER = 0.1
# Rows handed over by commits (``OutboxRelay.committed``) kept at most; past that the relay
# reads them from the table (a broker that does not keep up must not fill the memory).
HANDED_MAX = 5_000

# Built once: the relay runs them for every batch.
UNSENT = (
    select(outbox.c.seq, outbox.c.topic, outbox.c.envelope)
    .where(outbox.c.sent_at.is_(None))
    .order_by(outbox.c.seq)
    .limit(bindparam("batch"))
)
PURGE = delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < bindparam("before"))
TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
MARK_SENT = (
    update(outbox)
    .where(outbox.c.seq.in_(bindparam("seqs", expanding=True)))
    .values(sent_at=bindparam("now"))
)


class OutboxRelay:
    """One per service process. On PostgreSQL only the holder of an advisory lock relays.

    Why a lock and not ``FOR UPDATE SKIP LOCKED``: two relays taking disjoint rows would each
    publish in order, but rows of one aggregate split between them would race on the broker.
    One active relay per service keeps per-aggregate order; the others stand by and take over
    within a poll interval when its connection (and so its lock) goes away.
    """

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        service: str,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retention: timedelta = timedelta(hours=1),
    ):
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self._wake = asyncio.Event()
        self._idle_poll = max(IDLE_POLL, poll_interval)
        self._stopping = False
        self._lock_conn: Connection | None = None
        self._lock_proved = 0.0  # loop time the lock was last proved ours
        self._lock_key = advisory_key(f"mercato.outbox.{service}")
        self._last_purge = datetime.now(UTC)
        # Confirmed by the broker, not yet marked sent (``mark``), and since when.
        self._unmarked: list[int] = []
        self._unmarked_since = 0.0
        # Rows committed here (``committed``), by seq, and the seq the next row to publish
        # has (None: not known, the next batch is read from the table).
        self._handed: dict[int, Outgoing] = {}
        self._next: int | None = None
        self._read_seqs: set[int] = set()  # what the last read found

    def committed(self, rows: Sequence[Outgoing]) -> None:
        """Rows a transaction of this process has just committed. When they are the next
        rows of the outbox (their seqs follow on from the last row published, with none
        between), they are published from here, without reading them back; a gap (a row
        written by another process, or a rolled-back PostgreSQL sequence value) means a read."""
        if len(self._handed) < HANDED_MAX:
            for row in rows:
                self._handed[row.seq] = row
        else:  # far behind: read them from the table instead
            self._forget()
        self._wake.set()

    def _forget(self) -> None:
        """What was handed over is read from the table instead."""
        self._handed.clear()
        self._next = None

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in hand (cancelling it mid-transaction could
        leave a SQLite connection holding the write lock)."""
        self._stopping = True
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless woken meanwhile (or since the batch began)."""
        if self._stopping:
            return
        try:
            await within(seconds, self._wake.wait())
        except TimeoutError:
            pass

    async def run(self) -> None:
        """Relay until stopped. A commit in this process wakes the relay at once; the poll is
        for rows written elsewhere (another replica, a CLI command): every ``poll_interval``
        while there is work (and on a standby waiting for the lock), and after polls that
        found nothing less and less often, up to ``IDLE_POLL`` seconds apart."""
        failures = 0
        pause = self.poll_interval
        try:
            while not self._stopping:
                self._wake.clear()  # a commit from here on wakes the pause below
                try:
                    leader = await self._is_leader()
                    if not leader:
                        self._forget()  # the leader, elsewhere, reads them
                    sent = await self.relay_once() if leader else 0
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self._forget()
                    log.warning("outbox relay failed", service=self.service, error=str(exc))
                    await self._drop_lock()
                    self._wake.clear()  # back off even while commits keep waking us
                    await self._pause(min(0.1 * 2**failures, 5.0))
                    continue
                # A standby (not the leader) keeps asking at the poll interval, to take over.
                idle = leader and not sent
                pause = min(2 * pause, self._idle_poll) if idle else self.poll_interval
                if sent < self.batch_size:
                    # Back in time to mark what is confirmed, if nothing wakes us before.
                    await self._pause(min(pause, self._mark_due()) if self._unmarked else pause)
        finally:
            with contextlib.suppress(Exception):  # unmarked rows are published again later
                await self.mark()
            await self._drop_lock()

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows; return how many the broker confirmed.

        Confirmed rows are marked sent together (``mark``): once ``MARK_AFTER`` seconds have
        passed since the first of them, a batch's worth are waiting, a poll finds nothing new,
        a publish is not confirmed whole, or the relay is stopping. Until then they are not
        published again; after a crash they are (the consumers' inboxes drop the copies)."""
        handed = self._take_handed()
        if handed:
            seqs = [row.seq for row in handed]
            batch = [(row.topic, row.envelope) for row in handed]
        else:
            seqs, batch = await self._read()
            if not seqs:
                await self.mark()
                await self._purge()
                return 0
        await self._still_leader()
        otel = tracing.otel
        if otel is None:
            confirmed = await self.bus.publish(batch)
        else:
            spans = otel.publishing(self.service, tracing.system_of(self.bus), batch)
            try:
                confirmed = await self.bus.publish(batch)
            except BaseException as error:
                otel.published(spans, None, f"{type(error).__name__}: {error}"[:300])
                raise
            otel.published(spans, confirmed)
        # Only the confirmed prefix: a row after one the broker did not confirm stays unsent
        # (published again after it, in seq order; the inbox drops the copy), so the rows
        # marked sent are always all those before the first unsent one.
        done = seqs[: next((i for i, ok in enumerate(confirmed) if not ok), len(seqs))]
        if done:
            EVENTS_PUBLISHED.labels(self.service).inc(len(done))
            if not self._unmarked:
                self._unmarked_since = asyncio.get_running_loop().time()
            self._unmarked.extend(done)
        if len(done) < len(seqs):
            await self.mark()
            raise RuntimeError(
                f"broker confirmed {sum(confirmed)} of {len(seqs)} events; the first"
                f" {len(done)} are sent, the rest go out again"
            )
        if self._stopping or len(self._unmarked) >= self.batch_size or self._mark_due() <= 0:
            await self.mark()
        return len(done)

    def _take_handed(self) -> list[Outgoing]:
        """The rows handed over that come next in the outbox, in order (none if there is a
        gap before them: then the table is read)."""
        handed, following = self._handed, self._next
        if following is None:
            handed.clear()  # the read finds them
            return []
        behind = [seq for seq in handed if seq < following]
        for seq in behind:
            del handed[seq]
        if any(seq not in self._read_seqs for seq in behind):
            # Committed after a read that went past it (PostgreSQL: transactions of this
            # process commit out of seq order): never published, so read.
            self._forget()
            return []
        rows: list[Outgoing] = []
        while following in handed and len(rows) < self.batch_size:
            rows.append(handed.pop(following))
            following += 1
        if handed and not rows:
            self._forget()  # something before them was not handed over: read
            return []
        self._next = following
        return rows

    async def _read(self) -> tuple[list[int], list[tuple[str, Envelope]]]:
        """The next batch of unsent rows from the table (those confirmed and waiting for
        their mark left out). When the read finds the end of the outbox, the seq after its
        last row is where handed-over rows must start."""
        waiting = set(self._unmarked)
        limit = self.batch_size + len(waiting)
        async with self.db.connect() as conn:
            found = (await conn.execute(UNSENT, {"batch": limit})).all()
        self._read_seqs = {row.seq for row in found}
        if len(found) < limit and found:
            self._next = found[-1].seq + 1
        elif found:
            self._next = None  # more behind them
        rows = [row for row in found if row.seq not in waiting][: self.batch_size]
        return [row.seq for row in rows], [
            (row.topic, Envelope.from_json(row.envelope)) for row in rows
        ]

    async def mark(self) -> None:
        """Mark the rows the broker confirmed as sent, in one statement (one round trip on
        PostgreSQL)."""
        if not self._unmarked:
            return
        # Not refused after the lock is lost: the rows are on the broker, whoever says so.
        await self.db.execute_alone(MARK_SENT, {"seqs": self._unmarked, "now": datetime.now(UTC)})
        self._unmarked = []  # kept if that failed: marked (or published again) later

    def _mark_due(self) -> float:
        """Seconds until the waiting confirmed rows are to be marked."""
        return self._unmarked_since + MARK_AFTER - asyncio.get_running_loop().time()

    async def _purge(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_purge < timedelta(minutes=1):
            return
        self._last_purge = now
        await self.db.execute_alone(PURGE, {"before": now - self.retention})

    async def _is_leader(self) -> bool:
        if self.db.name != "postgresql":
            return True
        if self._lock_conn is not None:
            # Is the lock still ours? If its connection died, so did the lock. A connection
            # the server ended (a restart, a terminated backend) is known closed at once; a
            # round trip (autocommit: no transaction) proves the rest, at most once per poll
            # interval, not before every batch: under load that was ≈ 0.4 round trips per
            # order in every service, for a window (a batch) no shorter than the interval.
            await self._still_leader()
            now = asyncio.get_running_loop().time()
            if now - self._lock_proved >= self.poll_interval:
                await self._lock_conn.execute(SELECT_1)
                self._lock_proved = now
            return True
        conn = await self.db.dedicated()
        try:
            got = await conn.scalar(TRY_LOCK, {"k": self._lock_key})
        except BaseException:
            await self.db.close_dedicated(conn)
            raise
        if not got:
            await self.db.close_dedicated(conn)
            await asyncio.sleep(self.poll_interval)
            return False
        self._lock_conn = conn
        self._lock_proved = asyncio.get_running_loop().time()
        return True

    async def _still_leader(self) -> None:
        """Raise if this relay held the lock and its connection has closed since: it stops
        before publishing or marking another batch (``run`` drops the lock and stands by).
        Free, no round trip: a connection the server ended is known closed at once."""
        if self._lock_conn is not None and self._lock_conn.closed:
            raise ConnectionError("the outbox lock's connection is closed")

    async def _drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            try:
                await self.db.close_dedicated(conn)
            except Exception:  # the connection may already be gone; so is the lock then
                pass
