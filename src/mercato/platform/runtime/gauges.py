"""The gauges read when ``/metrics`` is scraped: each service's outbox backlog and the age of
its oldest unsent row, its dead letters, its queue's depth (where the broker tells it) and
whether it is ready. Read then and only then, so they cost nothing between scrapes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog

from mercato.platform.dead_letters import count_dead, outbox_backlog
from mercato.platform.metrics import (
    DEAD_LETTERS,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    QUEUE_DEPTH,
    SERVICE_READY,
)
from mercato.platform.waits import within

if TYPE_CHECKING:
    from mercato.platform.runtime.host import ServiceHost

log = structlog.get_logger(__name__)

TIMEOUT = 2.0  # seconds a scrape waits for one service's answers


async def refresh_gauges(hosts: Iterable[ServiceHost]) -> None:
    """Set every gauge of ``hosts`` (a service that does not answer in time is left as it
    was, and counted not ready)."""
    await asyncio.gather(*(_refresh(host) for host in hosts))


async def _refresh(host: ServiceHost) -> None:
    name, ctx = host.name, host.ctx
    if ctx is None:
        SERVICE_READY.labels(name).set(0)
        return
    try:
        await within(TIMEOUT, host.ready())
        SERVICE_READY.labels(name).set(1)
    except Exception:
        SERVICE_READY.labels(name).set(0)
        return
    try:
        count, age = await within(TIMEOUT, outbox_backlog(ctx.db))
        OUTBOX_BACKLOG.labels(name).set(count)
        OUTBOX_OLDEST_AGE.labels(name).set(age)
        if host.consumer is not None:
            DEAD_LETTERS.labels(name).set(await within(TIMEOUT, count_dead(ctx.db)))
    except Exception as exc:
        log.warning("metrics: cannot read the outbox or dead letters", service=name, error=str(exc))
    depth: Any = getattr(host.bus, "queue_depth", None)
    if depth is None or host.consumer is None:
        return
    try:
        waiting = await within(TIMEOUT, depth(name))
    except Exception as exc:
        log.warning(
            "metrics: the broker did not tell the queue depth", service=name, error=str(exc)
        )
        return
    if waiting is not None:
        QUEUE_DEPTH.labels(name).set(waiting)
