"""The event log from the command line: ``mercato events query|tail|story|export|replay|rebuild``.

They read audit's database directly, as ``mercato dlq`` reads the services' (read only; the
audit service made it). ``replay`` leaves a request there that a running audit service
carries out; ``rebuild`` works on catalog's database itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mercato.cli.common import console, err_console, fail, settings_or_exit
from mercato.platform.envelope import Envelope
from mercato.platform.settings import Settings, retention_seconds
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database
from mercato.services import SERVICES, UnknownService, load_service
from mercato.services.audit import store
from mercato.services.audit.replay import DONE, FAILED, replay_status, request_replay

T = TypeVar("T")

TypeOption = Annotated[str | None, typer.Option("--type", "-t", help="Only this event type")]
SubjectOption = Annotated[str | None, typer.Option(help="Only this subject (aggregate id)")]
CorrelationOption = Annotated[
    str | None, typer.Option("--correlation-id", help="Only this correlation id (an order id)")
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="From this time on: RFC 3339 (2026-12-07T14:00:00Z) or an age (30m, 2h, 7d)"),
]
UntilOption = Annotated[str | None, typer.Option(help="Before this time (same forms as --since)")]


def moment(text: str | None, name: str) -> datetime | None:
    """An RFC 3339 time, or an age ("90m": that long ago)."""
    if not text:
        return None
    try:
        age = retention_seconds(text)
    except ValueError:
        age = None
    if age is not None:
        return datetime.now(UTC) - timedelta(seconds=age)
    try:
        return store.parse_time(text, name)
    except store.BadQuery as exc:
        fail(f"{exc}, or an age such as 30m, 2h, 7d")


def event_filter(
    type_: str | None,
    subject: str | None = None,
    correlation_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> store.EventFilter:
    return store.EventFilter(
        type=type_,
        subject=subject,
        correlation_id=correlation_id,
        since=moment(since, "--since"),
        until=moment(until, "--until"),
    )


async def open_named(settings: Settings, name: str, table: str) -> Database:
    """Service ``name``'s database, which must exist and hold ``table``."""
    url = service_url(settings.database_url, name, settings.data_dir)
    missing = f"no {name} database with a {table} table at {url.render_as_string(True)}"
    if url.get_backend_name() == "sqlite" and url.database and not _exists(url.database):
        fail(f"{missing}: has the {name} service run with this data directory?", code=1)
    db = open_database(url, 2)
    try:
        present = await db.has_table(table)
    except Exception as exc:
        await db.dispose()
        fail(f"{missing}: {exc}", code=1)
    if not present:
        await db.dispose()
        fail(f"{missing}: has the {name} service run there?", code=1)
    return db


def _exists(path: str) -> bool:
    return Path(path).exists()


def with_audit(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await open_named(settings, "audit", "audit_events")
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _table() -> Table:
    return Table("time", "type", "publisher", "subject", "correlation id", "id")


def _row(table: Table, e: Envelope) -> None:
    cells = (
        e.time.isoformat(timespec="milliseconds"),
        e.type,
        e.source.rpartition("/")[2],
        e.subject or "",
        e.correlationid or "",
        e.id,
    )
    table.add_row(*(Text(c) for c in cells))


def query(
    type_: TypeOption = None,
    subject: SubjectOption = None,
    correlation_id: CorrelationOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, max=store.MAX_PAGE, help="Events shown")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page (printed after one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one event a line")] = False,
) -> None:
    """Stored events, newest first, filtered like GET /api/v1/admin/events."""
    settings = settings_or_exit()
    where = event_filter(type_, subject, correlation_id, since, until)

    async def read(db: Database) -> tuple[list[str], str | None]:
        async with db.connect() as conn:
            return await store.newest_first(conn, where, cursor, limit)

    try:
        found, following = with_audit(settings, read)
    except store.BadQuery as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write("".join(f"{doc}\n" for doc in found))
        return
    table = _table()
    for doc in found:
        _row(table, Envelope.from_json(doc))
    console.print(table)
    more = f"; next page: --cursor {following}" if following else ""
    console.print(f"{len(found)} event(s){more}")


def tail(
    type_: TypeOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print new events")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=store.MAX_PAGE)] = 20,
    interval: Annotated[float, typer.Option(min=0.05, help="--follow: seconds per look")] = 0.5,
) -> None:
    """The latest events, oldest of them first; with --follow, then each new one as it is
    appended (Ctrl-C stops)."""
    settings = settings_or_exit()
    where = store.EventFilter(type=type_)

    def show(e: Envelope) -> None:
        line = Text(f"{e.time.isoformat(timespec='milliseconds')}  ")
        line.append(e.type, style="bold")
        line.append(f"  {e.source.rpartition('/')[2]}  {e.subject or ''}")
        if e.causationid:
            line.append(f"  ← {e.causationid}", style="dim")
        console.print(line, highlight=False)

    async def run(db: Database) -> None:
        async with db.connect() as conn:
            latest, _ = await store.newest_first(conn, where, None, lines) if lines else ([], None)
            seq = await store.last_seq(conn)
        for doc in reversed(latest):
            show(Envelope.from_json(doc))
        while follow:
            await asyncio.sleep(interval)
            async with db.connect() as conn:
                new = await store.appended_after(conn, where, seq)
            for appended, envelope in new:
                show(envelope)
                seq = appended

    try:
        with_audit(settings, run)
    except KeyboardInterrupt:
        pass


def story(order_id: Annotated[str, typer.Argument(metavar="ORDER_ID")]) -> None:
    """An order's events as a tree of causes and effects, with the time since the first."""
    settings = settings_or_exit()

    async def read(db: Database) -> list[Envelope]:
        async with db.connect() as conn:
            return await store.order_story(conn, order_id)

    events = with_audit(settings, read)
    if not events:
        fail(f"no events of order {order_id!r} in the log", code=1)
    console.print(story_tree(order_id, events))


def story_tree(order_id: str, events: list[Envelope]) -> Tree:
    """Each event under the event that caused it (those whose cause is not in the story are
    the roots), with its publisher, the time since the first event and since its cause."""
    first = events[0].time
    by_id = {e.id: e for e in events}
    tree = Tree(Text(f"order {order_id}: {len(events)} events over {_ms(events[-1].time - first)}"))
    nodes: dict[str, Tree] = {}
    for e in events:  # in time order, so a cause is placed before its effects
        cause = by_id.get(e.causationid or "")
        label = Text(f"+{_ms(e.time - first):>9}  ", style="cyan")
        label.append(e.type, style="bold")
        label.append(f"  {e.source.rpartition('/')[2]}")
        if cause is not None:
            label.append(f"  ({_ms(e.time - cause.time)} after its cause)", style="dim")
        detail = {k: v for k, v in e.data.items() if k in _SHOWN_FIELDS}
        if detail:
            label.append("  " + json.dumps(detail, default=str), style="dim")
        parent = nodes.get(cause.id) if cause is not None else None
        nodes[e.id] = (parent or tree).add(label)
    return tree


_SHOWN_FIELDS = ("status", "reason", "amount", "totalAmount")


def _ms(delta: timedelta) -> str:
    ms = delta.total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def export(
    since: SinceOption = None,
    until: UntilOption = None,
    type_: TypeOption = None,
    subject: SubjectOption = None,
    correlation_id: CorrelationOption = None,
) -> None:
    """Write stored events as JSON Lines to stdout, oldest first, each a structured CloudEvent:
    ``mercato events export --since 7d > events.jsonl``."""
    settings = settings_or_exit()
    where = event_filter(type_, subject, correlation_id, since, until)

    async def write(db: Database) -> int:
        written = 0
        async for chunk in store.oldest_first(db, where):
            sys.stdout.write("".join(e.to_json() + "\n" for e in chunk))
            written += len(chunk)
        sys.stdout.flush()
        return written

    written = with_audit(settings, write)
    err_console.print(f"{written} event(s) exported", highlight=False)


def replay(
    to: Annotated[str, typer.Option("--to", help="The service whose consumer gets them")],
    type_: TypeOption = None,
    subject: SubjectOption = None,
    correlation_id: CorrelationOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the outcome")] = 120.0,
) -> None:
    """Deliver stored events again to one service's consumer (of them, those it is bound to),
    oldest first. Its inbox makes events it has handled harmless; a running audit service does
    the sending."""
    settings = settings_or_exit()
    patterns = consumer_patterns(to)
    where = event_filter(type_, subject, correlation_id, since, until)

    async def run(db: Database) -> Any:
        request_id = await request_replay(db, to, patterns, where)
        deadline = time.monotonic() + wait
        while True:
            row = await replay_status(db, request_id)
            if row.status in (DONE, FAILED) or time.monotonic() >= deadline:
                return row
            await asyncio.sleep(0.2)

    row = with_audit(settings, run)
    if row.status == DONE:
        console.print(f"replayed {row.delivered} event(s) to {to}")
    elif row.status == FAILED:
        fail(f"replay to {to} failed after {row.delivered} event(s): {row.error}", code=1)
    else:
        fail(
            f"replay {row.id} is still {row.status} after {wait:g} s: is the audit service "
            "running? It will be carried out when one is.",
            code=1,
        )


def consumer_patterns(name: str) -> list[str]:
    """The binding patterns of service ``name``'s consumer."""
    try:
        service = load_service(name)
    except UnknownService as exc:
        fail(str(exc))
    patterns = sorted({h.pattern for h in service.handlers})
    if not patterns or name == "audit":
        consumers = [n for n in SERVICES if n != "audit" and load_service(n).handlers]
        fail(f"{name} consumes no events to replay; consumers: {', '.join(consumers)}")
    return patterns


def rebuild(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="catalog-stock")],
    wipe: Annotated[bool, typer.Option(help="Empty the live model first")] = False,
) -> None:
    """Rebuild a read model from the log under a new consumer name and swap it in. MODEL:
    ``catalog-stock``, the availability catalog shows (from StockUpdated)."""
    if model != "catalog-stock":
        fail(f"unknown read model {model!r}; known: catalog-stock")
    from mercato.services.catalog import rebuild as catalog_rebuild

    settings = settings_or_exit()

    async def run(audit_db: Database) -> Any:
        catalog_db = await open_named(settings, "catalog", "displayed_stock_rebuild")
        try:
            if wipe:
                await catalog_rebuild.wipe_displayed_stock(catalog_db)
            stored = store.oldest_first(audit_db, store.EventFilter(type="StockUpdated"))
            return await catalog_rebuild.rebuild_displayed_stock(catalog_db, stored)
        finally:
            await catalog_db.dispose()

    try:
        done = with_audit(settings, run)
    except catalog_rebuild.RebuildFailed as exc:
        fail(f"rebuild failed, the live model is unchanged: {exc}", code=1)
    console.print(
        f"catalog-stock rebuilt from {done.events} StockUpdated event(s) as {done.consumer}; "
        f"{done.products} product(s) set"
    )


def register(app: typer.Typer) -> None:
    app.command("query")(query)
    app.command("tail")(tail)
    app.command("story")(story)
    app.command("export")(export)
    app.command("replay")(replay)
    app.command("rebuild")(rebuild)
