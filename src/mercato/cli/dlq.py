"""``mercato dlq list``, ``show ID``, ``redrive ID|--all`` and ``discard ID --reason``.

The same functions (``mercato.platform.dead_letters``) serve the admin routes, through each
service's Operations API; here they run on each service's database directly. IDs are the
public ones the routes show (``inventory.0190…``); a bare id is looked for in every service.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mercato.cli.common import console, fail, settings_or_exit
from mercato.platform.dead_letters import (
    NotOpen,
    discard,
    find_dead_letter,
    list_dead_letters,
    parse_id,
    public_id,
    readable,
    request_redrive,
    shown_status,
)
from mercato.platform.settings import Settings
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database
from mercato.services import SERVICES

app = typer.Typer(help="Dead letters: events a service could not handle.", no_args_is_help=True)

ServiceOption = Annotated[
    list[str] | None,
    typer.Option("--service", "-s", help="Only this service (repeatable) [default: all]"),
]


async def _each_db(settings: Settings, names: list[str]) -> list[tuple[str, Database]]:
    """The databases of the named services (a SQLite file not yet made has no dead letters)."""
    dbs = []
    for name in names:
        url = service_url(settings.database_url, name, settings.data_dir)
        if url.get_backend_name() == "sqlite" and url.database and not _exists(url.database):
            continue
        db = open_database(url)
        # Read only: migrating here would fail on the service's own revisions (not on this
        # path), and a database without the table has no dead letters.
        if await _has_dead_letters(db, name):
            dbs.append((name, db))
        else:
            await db.dispose()
    return dbs


async def _has_dead_letters(db: Database, name: str) -> bool:
    try:
        return await db.has_table("dead_letters")
    except Exception as exc:
        if "does not exist" in str(exc):  # PostgreSQL: the service never started here
            return False
        fail(f"cannot open the database of {name}: {exc}", code=1)


def _exists(path: str) -> bool:
    return Path(path).exists()


def _names(services: list[str] | None) -> list[str]:
    names = services or list(SERVICES)
    if not names:
        fail("no services to look at; name one with --service")
    return names


def _where(letter_id: str, services: list[str] | None) -> tuple[list[str], str]:
    """The services to look in for a letter, and its id in their databases."""
    service, own_id = parse_id(letter_id)
    if service is None:
        return _names(services), own_id
    if services and service not in services:
        fail(f"{letter_id!r} is a dead letter of {service}, not of {', '.join(services)}")
    return [service], own_id


@app.command("list")
def list_(
    services: ServiceOption = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Include redriven and discarded ones")
    ] = False,
) -> None:
    """Open dead letters of every service: id, event, error, attempts."""
    settings = settings_or_exit()

    async def collect() -> list[Any]:
        rows: list[Any] = []
        for _, db in await _each_db(settings, _names(services)):
            try:
                rows.extend(await list_dead_letters(db, status=None if all_ else "open"))
            finally:
                await db.dispose()
        return rows

    rows = asyncio.run(collect())
    table = Table(
        "id", "consumer", "event type", "event id", "attempts", "status", "failed at", "error"
    )
    for row in rows:
        cells = (
            public_id(row.consumer, row.id),
            row.consumer,
            row.event_type or "?",
            row.event_id or "?",
            str(row.attempts),
            shown_status(row.status),
            row.failed_at.isoformat(timespec="seconds"),
            (row.error.splitlines() or [""])[-1][:120],
        )
        table.add_row(*(Text(readable(cell)) for cell in cells))  # Text: no markup
    console.print(table)
    console.print(f"{len(rows)} dead letter(s)")


@app.command("show")
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID")], services: ServiceOption = None
) -> None:
    """One dead letter in full: its error, headers and body (bytes that are not UTF-8, and
    control characters, written as escapes)."""
    settings = settings_or_exit()
    names, own_id = _where(letter_id, services)

    async def find() -> Any:
        for _, db in await _each_db(settings, names):
            try:
                row = await find_dead_letter(db, own_id)
            finally:
                await db.dispose()
            if row is not None:
                return row
        return None

    row = asyncio.run(find())
    if row is None:
        fail(f"no dead letter {letter_id!r}", code=1)
    for label, value in (
        ("id", public_id(row.consumer, row.id)),
        ("consumer", row.consumer),
        ("event type", row.event_type or "?"),
        ("event id", row.event_id or "?"),
        ("status", shown_status(row.status)),
        ("attempts", str(row.attempts)),
        ("first failed at", (row.first_failed_at or row.failed_at).isoformat(timespec="seconds")),
        ("last failed at", row.failed_at.isoformat(timespec="seconds")),
        *((("discarded", f"{row.discard_reason}"),) if row.discard_reason else ()),
    ):
        console.print(Text(f"{label}: {readable(value)}"))
    console.print(Text(f"error:\n{readable(row.error)}"))
    console.print("headers:")
    for name, value in json.loads(row.headers).items():
        console.print(Text(f"  {readable(name)}: {readable(value)}"))
    console.print(Text(f"body ({len(row.body)} bytes):\n{readable(bytes(row.body))}"))


@app.command("redrive")
def redrive(
    letter_id: Annotated[str | None, typer.Argument(metavar="ID")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
    services: ServiceOption = None,
) -> None:
    """Hand dead letters back to their service, which handles them again through its inbox."""
    if (letter_id is None) == (not all_):
        fail("give one dead letter ID, or --all")
    settings = settings_or_exit()
    names, own_id = _names(services), None
    if letter_id is not None:
        names, own_id = _where(letter_id, services)

    async def mark() -> int:
        marked = 0
        for _, db in await _each_db(settings, names):
            try:
                marked += await request_redrive(db, own_id)
            finally:
                await db.dispose()
        return marked

    marked = asyncio.run(mark())
    if letter_id is not None and marked == 0:
        fail(f"no dead letter {letter_id!r} waiting (already redriven, or unknown)", code=1)
    console.print(
        f"{marked} dead letter(s) marked for redrive; their services take them within 5 seconds"
    )


@app.command("discard")
def discard_(
    letter_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept with the letter)")],
    services: ServiceOption = None,
) -> None:
    """Give up on an open dead letter, saying why: it is kept, listed as discarded (--all)."""
    settings = settings_or_exit()
    names, own_id = _where(letter_id, services)

    async def mark() -> Any:
        for _, db in await _each_db(settings, names):
            try:
                row = await discard(db, own_id, reason)
            finally:
                await db.dispose()
            if row is not None:
                return row
        return None

    try:
        row = asyncio.run(mark())
    except ValueError as exc:  # NotOpen is not one
        fail(str(exc))
    except NotOpen as exc:
        fail(f"{letter_id}: {exc}", code=1)
    if row is None:
        fail(f"no dead letter {letter_id!r}", code=1)
    console.print(Text(f"{public_id(row.consumer, row.id)} discarded: {readable(reason.strip())}"))
