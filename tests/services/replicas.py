"""Replicas of a service on one PostgreSQL database, as ``mercato serve`` runs them (each with
its own pool of connections and its own inbox consumer), and a session of the test's own
that holds a lock, so that two replicas' handlers meet at a chosen point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from mercato.contracts.events import Payload
from mercato.platform.bus.port import RawMessage, Verdict
from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.platform.inbox import InboxConsumer
from mercato.platform.runtime.service import Service
from mercato.platform.storage.database import ensure_database, open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.sql import Database
from tests.conftest import eventually


def message(payload: Payload, time: datetime | None = None) -> RawMessage:
    """``payload`` as the broker hands it to a consumer, under a new event id (published at
    ``time``, or now)."""
    envelope = Envelope(
        type=type(payload).__name__,
        source="mercato/test",
        data=payload.dump(),
        time=time or datetime.now(UTC),
    )
    headers, body = envelope.to_binary(AMQP_PREFIX)
    return RawMessage(topic="t", headers=headers, body=body, prefix=AMQP_PREFIX)


@dataclass
class Replica:
    db: Database
    consumer: InboxConsumer

    async def handle(self, *events: Payload | RawMessage) -> list[Verdict]:
        """One batch, as the bus delivers it: events become messages with new ids."""
        batch = [e if isinstance(e, RawMessage) else message(e) for e in events]
        return await self.consumer(batch)


@dataclass
class Replicas:
    """Replicas of one service on one PostgreSQL database (``template`` names it)."""

    of: list[Replica]
    template: str
    service: str

    @property
    def first(self) -> Replica:
        return self.of[0]

    async def at_once(self, hold: str, key: str, *events: Payload | RawMessage) -> None:
        """The n-th event handled by the n-th replica, all at the same moment (``meet``: the
        test's session holds ``hold`` on ``key``): each acknowledged, none failed."""
        runs = [r.handle(e) for r, e in zip(self.of, events, strict=True)]
        verdicts = await meet(self.template, self.service, hold, [key], *runs)
        assert verdicts == [[None]] * len(runs), verdicts


@asynccontextmanager
async def replicas(service: Service, template: str, count: int = 2) -> AsyncIterator[Replicas]:
    """``count`` replicas of ``service`` on the database ``template`` names for it (migrated)."""
    url = service_url(template, service.name, Path("."))
    await ensure_database(url)
    dbs = [open_database(url) for _ in range(count)]
    try:
        await migrate(dbs[0], service.migrations)
        prefetch = service.prefetch
        found = [
            Replica(db, InboxConsumer(service.name, db, service.handlers, prefetch=prefetch))
            for db in dbs
        ]
        yield Replicas(found, template, service.name)
    finally:
        for db in dbs:
            await db.dispose()


def dsn(template: str, service: str) -> str:
    return template.replace("{service}", service)


@asynccontextmanager
async def holding(template: str, service: str, sql: str, *args: Any) -> AsyncIterator[None]:
    """A session of its own runs ``sql`` in a transaction and keeps what it locked until the
    block ends (then rolls back)."""
    conn = await asyncpg.connect(dsn(template, service))
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(sql, *args)
        try:
            yield
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def meet(
    template: str, service: str, hold: str, args: Sequence[Any], *runs: Awaitable[Any]
) -> list[Any]:
    """Start ``runs`` one after another while a session of the test's own holds what ``hold``
    locks: each starts once the ones before wait for a lock (or have ended: one that needs
    nothing another holds), and when all of them do, the session lets go. Their results, in
    order."""
    conn = await asyncpg.connect(dsn(template, service))
    name = dsn(template, service).rsplit("/", 1)[1]
    tasks: list[asyncio.Future[Any]] = []

    async def all_wait() -> bool:
        running = sum(not t.done() for t in tasks)
        return running == 0 or int(await conn.fetchval(_WAITING, name)) >= running

    try:
        async with holding(template, service, hold, *args):
            for run in runs:
                tasks.append(asyncio.ensure_future(run))
                await eventually(all_wait, timeout=30)
    finally:
        await conn.close()
    return list(await asyncio.gather(*tasks))


_WAITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
