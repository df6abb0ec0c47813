"""A replay request is carried out by one audit replica, however many look at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mercato.platform.envelope import Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.services.audit import store
from mercato.services.audit.replay import DONE, replay_once, replay_status, request_replay
from mercato.services.audit.service import service as audit


class Recording:
    """A bus that records what is sent to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, consumer: str, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        await asyncio.sleep(0)  # let the other replica run meanwhile
        self.sent += [(consumer, e.id) for _, e in batch]
        return [True] * len(batch)


async def test_two_replicas_looking_at_once_replay_a_request_once(tmp_path: Path) -> None:
    url = service_url(None, "audit", tmp_path)
    dbs = [open_database(url, 2), open_database(url, 2)]
    try:
        await migrate(dbs[0], audit.migrations)
        created = [
            Envelope(type="OrderCreated", source="mercato/order", data={"orderId": f"o{n}"})
            for n in range(3)
        ]
        async with dbs[0].begin() as conn:
            await store.append(conn, created, created[0].time)
        request_id = await request_replay(
            dbs[0], "payment", ["*.OrderCreated"], store.EventFilter()
        )
        bus = Recording()
        replicas = [cast(ServiceContext, SimpleNamespace(db=db, bus=bus)) for db in dbs]
        done = await asyncio.gather(*(replay_once(ctx) for ctx in replicas))
        assert sorted(done) == [0, 1]
        row: Any = await replay_status(dbs[0], request_id)
        assert row.status == DONE and row.matched == row.delivered == 3
        assert sorted(bus.sent) == sorted(("payment", e.id) for e in created)
    finally:
        for db in dbs:
            await db.dispose()
