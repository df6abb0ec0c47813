"""Dead letters: kept in the consuming service's own database with their error.

``mercato dlq redrive`` marks rows ``redrive``; the owning service's ``Redriver`` (running in
every replica) claims each row once and hands it to its inbox consumer again, so a redriven
event still goes through the inbox and cannot take effect twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Row, bindparam, func, select, update

from mercato.platform.inbox import InboxConsumer
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import dead_letters

log = structlog.get_logger(__name__)

DEAD, REDRIVE, REDRIVING, REDRIVEN = "dead", "redrive", "redriving", "redriven"


async def list_dead_letters(db: Database, include_redriven: bool = False) -> Sequence[Row[Any]]:
    query = select(dead_letters).order_by(dead_letters.c.failed_at)
    if not include_redriven:
        query = query.where(dead_letters.c.status != REDRIVEN)
    async with db.connect() as conn:
        return (await conn.execute(query)).all()


async def find_dead_letter(db: Database, letter_id: str) -> Row[Any] | None:
    async with db.connect() as conn:
        found = await conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id))
        row: Row[Any] | None = found.first()
        return row


def readable(data: bytes | str) -> str:
    """A dead letter's body or field for a terminal: UTF-8 where it is, every other byte and
    every control character but newline and tab written as an escape (``\\x00``)."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


async def request_redrive(db: Database, letter_id: str | None) -> int:
    """Mark one dead letter (or all, with None) for redrive; return how many were marked."""
    query = update(dead_letters).where(dead_letters.c.status == DEAD).values(status=REDRIVE)
    if letter_id is not None:
        query = query.where(dead_letters.c.id == letter_id)
    async with db.begin() as conn:
        return (await conn.execute(query)).rowcount


async def count_dead(db: Database) -> int:
    async with db.connect() as conn:
        value = await conn.scalar(
            select(func.count()).select_from(dead_letters).where(dead_letters.c.status == DEAD)
        )
        return int(value or 0)


# Polled every few seconds by every service: built once.
_TO_REDRIVE = (
    select(dead_letters)
    .where(dead_letters.c.status == REDRIVE, dead_letters.c.consumer == bindparam("consumer"))
    .limit(100)
)
_CLAIM = (
    update(dead_letters)
    .where(dead_letters.c.id == bindparam("letter"), dead_letters.c.status == REDRIVE)
    .values(status=REDRIVING)
)


class Redrivable(Protocol):
    """What takes a dead letter back: an ``InboxConsumer``, or a service's own (notification's
    mail), each for the rows of its ``name``."""

    @property
    def name(self) -> str: ...

    async def redrive(self, row: Any) -> str | None: ...


class Redriver:
    """Redrives what ``mercato dlq redrive`` (another process) marked: it looks every
    ``poll_interval`` seconds, an operator's action needs no faster answer."""

    def __init__(
        self, db: Database, consumer: InboxConsumer | Redrivable, poll_interval: float = 5.0
    ):
        self.db = db
        self.consumer = consumer
        self.poll_interval = poll_interval

    async def run(self) -> None:
        while True:
            try:
                await self.redrive_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redrive failed", consumer=self.consumer.name, error=str(exc))
            await asyncio.sleep(self.poll_interval)

    async def redrive_once(self) -> int:
        async with self.db.connect() as conn:
            rows = (await conn.execute(_TO_REDRIVE, {"consumer": self.consumer.name})).all()
        done = 0
        for row in rows:
            async with self.db.begin() as conn:
                claimed = await conn.execute(_CLAIM, {"letter": row.id})
            if claimed.rowcount != 1:
                continue  # another replica took it
            error = await self.consumer.redrive(row)
            values: dict[str, Any] = (
                {"status": REDRIVEN, "redriven_at": datetime.now(UTC)}
                if error is None
                else {
                    "status": DEAD,
                    "error": error,
                    "attempts": row.attempts + 1,
                    "failed_at": datetime.now(UTC),
                }
            )
            async with self.db.begin() as conn:
                await conn.execute(
                    update(dead_letters).where(dead_letters.c.id == row.id).values(**values)
                )
            done += error is None
        return done
