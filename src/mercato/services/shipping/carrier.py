"""The sandbox carrier: it delivers every shipment (and brings every return to the warehouse)
``MERCATO_CARRIER_DELAY`` seconds after it was made; with ``never`` it waits for the callback
routes to say what happened."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from mercato.platform.runtime.service import ServiceContext
from mercato.services.shipping import shipments, store
from mercato.services.shipping.domain import ShippingError

log = structlog.get_logger(__name__)


def delay_of(ctx: ServiceContext) -> timedelta | None:
    value = ctx.settings.carrier_delay
    return None if value == "never" else timedelta(seconds=float(value))


async def sandbox_carrier(ctx: ServiceContext) -> None:
    """Deliver what is due, each shipment in its own transaction.

    Replicas may run this at once: the row lock makes the second one find the shipment
    delivered already (and ``deliver`` does nothing twice)."""
    delay = delay_of(ctx)
    if delay is None:
        return
    pause = min(1.0, max(0.05, delay.total_seconds() / 4))
    while True:
        try:
            async with ctx.db.connect() as conn:
                due = await store.due(conn, shipments.now_utc() - delay)
            for shipment_id in due:
                try:
                    async with ctx.transaction() as uow:
                        await shipments.deliver(uow, shipment_id)
                except ShippingError:
                    pass  # stopped or failed meanwhile: nothing to deliver
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is briefly away: the next round tries again
            log.warning("the sandbox carrier could not deliver", error=str(exc))
        await asyncio.sleep(pause)
