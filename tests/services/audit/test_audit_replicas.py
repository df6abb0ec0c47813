"""Two replicas of audit appending the same events at the same moment keep each once: on
PostgreSQL while a session of the test's holds the log's table, so that both batches are in
flight together; on SQLite, both at once on one file."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from mercato.contracts.events import ProductViewed, StockUpdated
from mercato.platform.bus.port import RawMessage
from mercato.platform.storage.tables import inbox
from mercato.services.audit.service import service as audit
from mercato.services.audit.tables import events
from tests.services.replicas import Replica, meet, message, replicas


def some_events(count: int) -> list[RawMessage]:
    return [
        message(
            ProductViewed(productId=f"p{n}")
            if n % 2
            else StockUpdated(productId=f"p{n}", quantity=n)
        )
        for n in range(count)
    ]


async def kept(replica: Replica) -> tuple[Counter[str], int]:
    async with replica.db.connect() as conn:
        rows = (await conn.execute(sa.select(events.c.event_id))).all()
        claimed = await conn.scalar(
            sa.select(sa.func.count()).select_from(inbox).where(inbox.c.consumer == "audit")
        )
    return Counter(r.event_id for r in rows), int(claimed)


def ids(batch: Sequence[RawMessage]) -> set[str]:
    return {str(m.headers["cloudEvents:id"]) for m in batch}


async def test_two_replicas_append_overlapping_batches_once_on_postgres(
    postgres_template: str,
) -> None:
    batch = some_events(30)
    first, second = batch[:20], batch[10:]  # ten events in both
    async with replicas(audit, postgres_template) as two:
        a, b = two.of
        verdicts = await meet(
            postgres_template,
            "audit",
            "LOCK TABLE audit_events IN SHARE MODE",  # appends wait for the test's session
            [],
            a.consumer(first),
            b.consumer(list(reversed(second))),
        )
        assert verdicts == [[None] * 20, [None] * 20]
        copies, claimed = await kept(a)
    assert set(copies) == ids(batch) and set(copies.values()) == {1}
    assert claimed == 30


async def test_two_replicas_append_the_same_events_at_once_on_sqlite(tmp_path: Path) -> None:
    batch = some_events(60)
    async with replicas(audit, f"sqlite:///{tmp_path}/{{service}}.db") as two:
        a, b = two.of
        shuffled = random.sample(batch, len(batch))
        runs = [a.consumer(batch[i : i + 15]) for i in range(0, 60, 15)]
        runs += [b.consumer(shuffled[i : i + 20]) for i in range(0, 60, 20)]
        verdicts = await asyncio.gather(*runs)
        assert all(v is None for vs in verdicts for v in vs)
        copies, claimed = await kept(a)
    assert set(copies) == ids(batch) and set(copies.values()) == {1}
    assert claimed == 60
