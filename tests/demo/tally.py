"""The demo ``tally``: counts entries per account from ``EntryRecorded`` events.

``mirror`` is the same code as a second consuming service (its own queue and database), so
tests can check that every consumer gets an event exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, select, update

from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service
from mercato.platform.unit_of_work import UnitOfWork
from tests.demo.events import EntryRecorded

MIGRATIONS = Path(__file__).parent / "migrations" / "tally"
log = structlog.get_logger(__name__)

metadata = MetaData()
tallies = Table(
    "tallies",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("entries", Integer, nullable=False),
    Column("total", Numeric(18, 4), nullable=False),
)
arrivals = Table(
    "arrivals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False),
    Column("account", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)
frozen_accounts = Table(
    "frozen_accounts", metadata, Column("account", String(64), primary_key=True)
)


class AccountFrozen(RuntimeError):
    pass


async def count_entry(event: EntryRecorded, uow: UnitOfWork) -> None:
    """Add the entry to its account's tally and note its arrival.

    Idempotent through the inbox (the runtime skips an event id already processed). Does not
    tolerate reordering in the sense that ``arrivals`` records the order events came in: the
    ordering tests read it. Fails while the account is frozen (the dead-letter tests' cause).
    """
    if event.pause:
        log.info("tally pausing", entry_id=event.entryId, seconds=event.pause)
        await asyncio.sleep(event.pause)
    frozen = await uow.conn.scalar(
        select(frozen_accounts.c.account).where(frozen_accounts.c.account == event.account)
    )
    if frozen is not None:
        raise AccountFrozen(f"account {event.account} is frozen")
    await uow.conn.execute(
        arrivals.insert().values(entry_id=event.entryId, account=event.account, n=event.n)
    )
    changed = await uow.conn.execute(
        update(tallies)
        .where(tallies.c.account == event.account)
        .values(entries=tallies.c.entries + 1, total=tallies.c.total + event.amount)
    )
    if changed.rowcount == 0:
        await uow.conn.execute(
            tallies.insert().values(account=event.account, entries=1, total=event.amount)
        )
    if event.pause:
        log.info("tally paused and counted", entry_id=event.entryId)


def tally_service(name: str) -> Service:
    return Service(name=name, migrations=MIGRATIONS, handlers=[on(EntryRecorded, count_entry)])


service = tally_service("tally")
mirror = tally_service("mirror")
