"""Retention: rows older than a service's retention setting are pruned, a little at a time.

Every replica prunes; the deletes are idempotent (two replicas deleting the same old rows at
once delete them once), so no coordination is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from mercato.platform.settings import retention_seconds

log = structlog.get_logger(__name__)


def prune_interval(retention: float) -> float:
    """How often to prune: a tenth of the retention, between a second and five minutes."""
    return min(max(retention / 10, 1.0), 300.0)


async def prune_forever(
    what: str, setting: str, prune: Callable[[datetime], Awaitable[int]]
) -> None:
    """Every ``prune_interval``, ``prune(cutoff)`` (rows before it go; it returns how many);
    nothing at all for a retention of "forever". ``what`` names the rows in the logs."""
    retention = retention_seconds(setting)
    if retention is None:
        return  # keep everything
    while True:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=retention)
            removed = await prune(cutoff)
            if removed:
                log.info(f"{what} pruned", rows=removed, older_than=cutoff.isoformat())
        except Exception as exc:  # the database is away: next time
            log.warning(f"{what}: pruning failed", error=str(exc))
        await asyncio.sleep(prune_interval(retention))
