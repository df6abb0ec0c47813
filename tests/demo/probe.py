"""Test-side helpers around the demo pair: its databases, its events, what they hold."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from mercato.platform.bus.port import EventBus, RawMessage, topic_of
from mercato.platform.envelope import NATS_PREFIX, Envelope
from mercato.platform.ids import new_id
from mercato.platform.storage.database import ensure_database, open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import dead_letters, inbox, outbox
from tests.demo import ledger, tally
from tests.demo.events import EntryRecorded

ROOT = Path(__file__).resolve().parents[2]


def entry_event(account: str, n: int = 1, amount: str = "10.00", pause: float = 0.0) -> Envelope:
    data = EntryRecorded(
        entryId=new_id(), account=account, n=n, amount=Decimal(amount), pause=pause
    ).dump()
    return Envelope(type="EntryRecorded", source="mercato/ledger", data=data, subject=account)


def raw(envelope: Envelope, prefix: str = NATS_PREFIX) -> RawMessage:
    """The event as a bus hands it to a consumer (binary mode)."""
    headers, body = envelope.to_binary(prefix)
    return RawMessage(topic_of(envelope), headers, body, prefix)


async def service_engine(template: str | None, name: str, data_dir: Path) -> Database:
    """A demo service's database, created and migrated (``ledger``, or a tally by any name)."""
    url = service_url(template, name, data_dir)
    await ensure_database(url)
    engine = open_database(url)
    await migrate(engine, ledger.MIGRATIONS if name == "ledger" else tally.MIGRATIONS)
    return engine


async def rows(engine: Database, query: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def count_of(engine: Database, account: str) -> int:
    """How many entries the tally counted for ``account`` (0 when none)."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(tally.tallies.c.entries).where(tally.tallies.c.account == account)
        )
    return int(value or 0)


async def arrivals(engine: Database, account: str) -> list[tuple[str, int]]:
    """(entry id, n) of every event the tally took for ``account``, in arrival order."""
    a = tally.arrivals.c
    found = await rows(engine, select(a.entry_id, a.n).where(a.account == account).order_by(a.seq))
    return [(r.entry_id, r.n) for r in found]


async def inbox_count(engine: Database, consumer: str, event_id: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(func.count())
            .select_from(inbox)
            .where(inbox.c.consumer == consumer, inbox.c.event_id == event_id)
        )
    return int(value or 0)


async def unsent(engine: Database) -> list[str]:
    """Event ids still waiting in the outbox."""
    found = await rows(engine, select(outbox.c.event_id).where(outbox.c.sent_at.is_(None)))
    return [r.event_id for r in found]


async def letters(engine: Database) -> list[Any]:
    return await rows(engine, select(dead_letters).order_by(dead_letters.c.failed_at))


async def freeze(engine: Database, account: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(tally.frozen_accounts.insert().values(account=account))


async def thaw(engine: Database, account: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            delete(tally.frozen_accounts).where(tally.frozen_accounts.c.account == account)
        )


async def mercato(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m mercato ARGS`` without blocking the loop; (exit code, stdout+stderr).

    ``env`` is added to this process's environment minus any MERCATO_* variable; the repo
    root is put on PYTHONPATH so ``tests.demo`` imports.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mercato",
        *args,
        env={**base, "PYTHONPATH": str(ROOT), "COLUMNS": "400", **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def broker_bus(url: str, namespace: str) -> EventBus:
    """A bus on the broker ``url`` names, in a namespace of its own (exchanges, queues)."""
    if url.startswith("nats"):
        from mercato.platform.bus.nats import NatsBus

        return NatsBus(url, namespace=namespace)
    from mercato.platform.bus.rabbitmq import RabbitBus

    return RabbitBus(url, namespace=namespace)


async def drop_namespace(
    url: str, namespace: str, consumers: Sequence[str] = ("tally", "mirror")
) -> None:
    """Delete what a test left on the broker: its namespace, or only the demo's queues when the
    namespace is the shared default."""
    if url.startswith(("nats", "kafka")):
        from mercato.platform.bus.kafka import KafkaBus
        from mercato.platform.bus.nats import NatsBus

        bus: NatsBus | KafkaBus = (
            NatsBus(url, namespace=namespace)
            if url.startswith("nats")
            else KafkaBus(url, namespace=namespace, idempotence=False)  # deletes only
        )
        await bus.connect()
        try:
            await bus.delete_namespace()
        finally:
            await bus.close()
        return
    import aio_pika

    # The adapter names a consumer's queues {namespace}.{consumer}[.dead].
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for consumer in consumers:
            for name in (f"{namespace}.{consumer}", f"{namespace}.{consumer}.dead"):
                await channel.queue_delete(name)
        if namespace != "mercato":
            for name in (f"{namespace}.events", f"{namespace}.dead-letters"):
                await channel.exchange_delete(name)
    finally:
        await connection.close()
