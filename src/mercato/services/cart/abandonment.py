"""The background task that notices carts left alone: CartAbandoned, once per idle spell."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from mercato.platform.runtime.service import ServiceContext
from mercato.services.cart import store

log = structlog.get_logger(__name__)


async def watch_abandoned_carts(ctx: ServiceContext) -> None:
    after = timedelta(seconds=ctx.settings.cart_abandon_after)
    # Often enough that a cart is reported within a quarter of the idle time, at most a minute.
    interval = min(max(after.total_seconds() / 4, 0.05), 60.0)
    while True:
        await asyncio.sleep(interval)
        try:
            async with ctx.transaction() as uow:
                found = await store.abandon_idle(uow, datetime.now(UTC), after)
            if found:
                log.info("carts abandoned", count=found)
        except Exception as exc:  # the database may be briefly away: try again next round
            log.warning("abandoned-cart scan failed", error=str(exc))
