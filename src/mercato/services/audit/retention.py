"""Retention: events older than ``MERCATO_AUDIT_RETENTION`` are pruned, a little at a time.

Every replica prunes; the deletes are idempotent (two replicas deleting the same old rows at
once delete them once), so no coordination is needed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from mercato.platform.runtime.service import ServiceContext
from mercato.platform.settings import retention_seconds
from mercato.services.audit import store

log = structlog.get_logger(__name__)


def prune_interval(retention: float) -> float:
    """How often to prune: a tenth of the retention, between a second and five minutes."""
    return min(max(retention / 10, 1.0), 300.0)


async def prune_expired(ctx: ServiceContext) -> None:
    retention = retention_seconds(ctx.settings.audit_retention)
    if retention is None:
        return  # keep everything
    while True:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=retention)
            removed = await store.prune(ctx.db, cutoff)
            if removed:
                log.info("audit log pruned", events=removed, older_than=cutoff.isoformat())
        except Exception as exc:  # the database is away: next time
            log.warning("audit pruning failed", error=str(exc))
        await asyncio.sleep(prune_interval(retention))
