"""``mercato trace ORDER_ID``: an order's hops with their timings, without a tracing backend.

Read from what the services keep anyway, in their own databases: the order's status history
(order), every event of the order in each service's outbox (written when its transaction
committed) and each consumer's inbox (handled when its transaction began). So it shows where
the order's time went, hop by hop: written → handled is the relay's, the broker's and the
queue's delay, handled → the next event written the handler's. (When the broker confirmed an
event is not kept: the relay marks rows sent in batches, up to ``MARK_AFTER`` later.) The
outbox keeps sent events for an hour (``OutboxRelay.retention``): for an older order only the
status history and the handlers' times are left. With tracing on (``OTEL_*``), the same hops
are spans in the tracing backend, the publish among them.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from mercato.cli.common import console, fail, settings_or_exit
from mercato.cli.dlq import _each_db as service_databases
from mercato.platform.envelope import Envelope
from mercato.platform.settings import Settings
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import inbox, outbox
from mercato.platform.times import rfc3339
from mercato.services import SERVICES
from mercato.services.order.tables import order_status_history, orders

_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


@dataclass(frozen=True)
class Hop:
    at: datetime
    service: str
    what: str  # wrote, handled, status
    detail: str  # the event's type, or FROM → TO
    waited_ms: float | None = None  # since the step before it (the event's, or the status's)
    note: str = ""  # the reason of a status change; the event that caused an event


async def collect(settings: Settings, order_id: str) -> list[Hop]:
    """Every hop of the order found in the services' databases, by time."""
    hops: list[Hop] = []
    dbs = await service_databases(settings, list(SERVICES))
    try:
        found = await asyncio.gather(*(_events(db, order_id) for _, db in dbs))
        events = [
            (service, row, Envelope.from_json(row.envelope))
            for (service, _), rows in zip(dbs, found, strict=True)
            for row in rows
        ]
        types = {envelope.id: envelope.type for _, _, envelope in events}
        since: dict[str, datetime] = {}  # event id → when it was written
        for service, row, envelope in events:
            cause = types.get(envelope.causationid or "")
            note = f"after {cause}" if cause else ""
            if row.sent_at is None:
                note = f"{note}; not yet published".lstrip("; ")
            hops.append(Hop(row.created_at, service, "wrote", envelope.type, note=note))
            since[envelope.id] = row.created_at
        handled = await asyncio.gather(*(_handled(db, list(since)) for _, db in dbs))
        for rows in handled:
            for row in rows:
                waited = _ms(row.processed_at, since[row.event_id])
                hops.append(
                    Hop(row.processed_at, row.consumer, "handled", types[row.event_id], waited)
                )
        order_db = next((db for name, db in dbs if name == "order"), None)
        if order_db is not None:
            hops += await _statuses(order_db, order_id)
    finally:
        for _, db in dbs:
            await db.dispose()
    return sorted(hops, key=lambda h: (h.at, _ORDER[h.what]))


_ORDER = {"status": 0, "wrote": 1, "handled": 2}


async def _events(db: Database, order_id: str) -> list[Any]:
    # The envelope is stored compact (``Envelope.to_json``): its correlation id reads as below.
    # A scan of the outbox, which keeps an hour of events.
    marker = f'"correlationid":"{order_id}"'
    query = select(outbox).where(outbox.c.envelope.contains(marker, autoescape=True))
    async with db.connect() as conn:
        return list((await conn.execute(query.order_by(outbox.c.seq))).all())


async def _handled(db: Database, event_ids: list[str]) -> list[Any]:
    if not event_ids:
        return []
    async with db.connect() as conn:
        query = select(inbox).where(inbox.c.event_id.in_(event_ids))
        return list((await conn.execute(query)).all())


async def _statuses(db: Database, order_id: str) -> list[Hop]:
    h = order_status_history.c
    async with db.connect() as conn:
        created = await conn.scalar(select(orders.c.created_at).where(orders.c.id == order_id))
        if created is None:
            return []
        rows = (
            await conn.execute(select(order_status_history).where(h.order_id == order_id))
        ).all()
    hops, since = [], created
    for row in sorted(rows, key=lambda r: (r.at, r.seq)):
        moved = f"{row.from_status} → {row.to_status}" if row.from_status else row.to_status
        hops.append(Hop(row.at, "order", "status", moved, _ms(row.at, since), row.reason or ""))
        since = row.at
    if not rows:
        hops.append(Hop(created, "order", "status", "CREATED"))
    return hops


def _ms(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds() * 1000, 1)


def trace(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
) -> None:
    """An order's hops with their timings: status changes, and each event written and handled,
    by which service (from the services' own databases; the outbox keeps an hour of
    events)."""
    if not _ID.fullmatch(order_id):
        fail(f"{order_id!r} is not an order id")
    settings = settings_or_exit()
    hops = asyncio.run(collect(settings, order_id))
    if not hops:
        fail(f"no order {order_id} in the services' databases", code=1)
    start = hops[0].at
    if as_json:
        document = [
            {
                "at": rfc3339(h.at),
                "sinceStartMs": _ms(h.at, start),
                "service": h.service,
                "what": h.what,
                "detail": h.detail,
                "waitedMs": h.waited_ms,
                "note": h.note,
            }
            for h in hops
        ]
        console.print_json(json.dumps({"orderId": order_id, "hops": document}))
        return
    table = Table("+ms", "service", "hop", "what", "waited ms", "note", title=f"order {order_id}")
    for h in hops:
        waited = "" if h.waited_ms is None else f"{h.waited_ms:.1f}"
        table.add_row(f"{_ms(h.at, start):.1f}", h.service, h.what, h.detail, waited, h.note)
    console.print(table)
