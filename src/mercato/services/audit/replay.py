"""Replay: stored events delivered again to one service's consumer.

``mercato events replay … --to SERVICE`` (another process, with no way into an embedded
system's in-process bus) writes a request row in audit's database; a replica of audit claims
it (a conditional update: one replica does each request) and sends the matching events, oldest
first, straight to the service's queue with ``EventBus.send``, past every binding: the other
services do not see them. Only the events the service is bound to go (the request carries its
patterns), so nothing arrives that it would have to dead-letter as unknown. They go through the
service's inbox like any delivery: an event it has handled is acknowledged without effect, one
it missed is handled, one that fails is retried and dead-lettered as usual. On the in-process
bus a send returns once the service has committed; on a broker, once the broker has it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog

from mercato.platform.bus.port import topic_matches, topic_of
from mercato.platform.ids import new_id
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.storage.sql import Database
from mercato.services.audit import store
from mercato.services.audit.tables import replays

log = structlog.get_logger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
POLL = 1.0  # seconds between looks for a request: an operator's action


def filters_of(where: store.EventFilter) -> dict[str, str]:
    return {
        k: v
        for k, v in {
            "type": where.type,
            "subject": where.subject,
            "correlationId": where.correlation_id,
            "since": where.since.isoformat() if where.since else None,
            "until": where.until.isoformat() if where.until else None,
        }.items()
        if v
    }


def filter_from(doc: dict[str, str]) -> store.EventFilter:
    return store.EventFilter(
        type=doc.get("type"),
        subject=doc.get("subject"),
        correlation_id=doc.get("correlationId"),
        since=store.parse_time(doc.get("since"), "since"),
        until=store.parse_time(doc.get("until"), "until"),
    )


async def request_replay(
    db: Database, target: str, patterns: Sequence[str], where: store.EventFilter
) -> str:
    request_id = new_id()
    async with db.begin() as conn:
        await conn.execute(
            replays.insert(),
            {
                "id": request_id,
                "target": target,
                "patterns": json.dumps(list(patterns)),
                "filters": json.dumps(filters_of(where)),
                "status": PENDING,
                "matched": 0,
                "delivered": 0,
                "requested_at": datetime.now(UTC),
            },
        )
    return request_id


async def replay_status(db: Database, request_id: str) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(replays).where(replays.c.id == request_id))).first()


_PENDING = (
    sa.select(replays.c.id).where(replays.c.status == PENDING).order_by(replays.c.requested_at)
)
_CLAIM = (
    replays.update()
    .where(replays.c.id == sa.bindparam("b_id"), replays.c.status == PENDING)
    .values(status=RUNNING)
)


async def replay_requested(ctx: ServiceContext) -> None:
    """The background task: do each request as it comes."""
    while True:
        try:
            await replay_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("replay look-up failed", error=str(exc))
        await asyncio.sleep(POLL)


async def replay_once(ctx: ServiceContext) -> int:
    async with ctx.db.connect() as conn:
        waiting = list(await conn.scalars(_PENDING))
    done = 0
    for request_id in waiting:
        async with ctx.db.begin() as conn:
            claimed = (await conn.execute(_CLAIM, {"b_id": request_id})).rowcount
        if claimed != 1:
            continue  # another replica has it
        row = await replay_status(ctx.db, request_id)
        await _perform(ctx, row)
        done += 1
    return done


async def _perform(ctx: ServiceContext, row: Any) -> None:
    patterns = json.loads(row.patterns)
    matched = delivered = 0
    error: str | None = None
    try:
        where = filter_from(json.loads(row.filters))
        async for chunk in store.oldest_first(ctx.db, where, chunk=100):
            batch = [(topic_of(e), e) for e in chunk]
            batch = [(t, e) for t, e in batch if any(topic_matches(p, t) for p in patterns)]
            if not batch:
                continue
            matched += len(batch)
            delivered += sum(await ctx.bus.send(row.target, batch))
        if delivered < matched:
            error = f"{matched - delivered} of {matched} event(s) not taken by the broker"
    except LookupError as exc:
        error = str(exc)
    except Exception as exc:
        error = f"replay failed: {exc!r}"
    log.info(
        "replay finished", target=row.target, matched=matched, delivered=delivered, error=error
    )
    async with ctx.db.begin() as conn:
        await conn.execute(
            replays.update()
            .where(replays.c.id == row.id)
            .values(
                status=FAILED if error else DONE,
                matched=matched,
                delivered=delivered,
                error=error,
                finished_at=datetime.now(UTC),
            )
        )
