"""Retention: the running audit service prunes what is older than MERCATO_AUDIT_RETENTION, and
keeps the rest; without it, keeps everything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.retention import prune_interval
from mercato.platform.storage.database import open_database, service_url
from mercato.services.audit.service import service as audit
from mercato.services.audit.tables import events
from tests.conftest import eventually
from tests.support import running
from tests.support import test_settings as make_settings


def viewed(age: timedelta) -> Envelope:
    return Envelope(
        type="ProductViewed",
        source="mercato/catalog",
        data={"productId": "p1"},
        subject="p1",
        time=datetime.now(UTC) - age,
    )


async def kept_ids(data_dir: Path) -> set[str]:
    db = open_database(service_url(None, "audit", data_dir), 1)
    try:
        async with db.connect() as conn:
            return set((await conn.scalars(sa.select(events.c.event_id))).all())
    finally:
        await db.dispose()


async def test_the_running_service_prunes_what_is_older_than_the_retention(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, audit_retention="3s")
    async with running([audit], settings) as (system, _):
        old, recent = viewed(timedelta(hours=1)), viewed(timedelta(0))
        assert await system.bus.send("audit", [(topic_of(e), e) for e in (old, recent)]) == [
            True,
            True,
        ]

        async def pruned() -> bool:
            return old.id not in await kept_ids(tmp_path)

        await eventually(pruned, timeout=15, interval=0.2)
        assert recent.id in await kept_ids(tmp_path)


async def test_without_a_retention_everything_is_kept(tmp_path: Path) -> None:
    async with running([audit], make_settings(tmp_path)) as (system, _):
        ancient = viewed(timedelta(days=3650))
        assert await system.bus.send("audit", [(topic_of(ancient), ancient)]) == [True]
        assert ancient.id in await kept_ids(tmp_path)


def test_pruning_runs_every_tenth_of_the_retention_within_bounds() -> None:
    assert prune_interval(3) == 1.0
    assert prune_interval(600) == 60.0
    assert prune_interval(30 * 86400) == 300.0
