"""Embedded SQLite runs on the event loop's thread, yet nothing waits with the loop asleep:
two connections of one process to one file queue on the file's gate, another process's write
lock is waited for with an asynchronous back-off, and a transaction that ends either way
lets the next one in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from mercato.platform.storage import sql
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    url = service_url(None, "inline", tmp_path)
    first, second = open_database(url), open_database(url)
    async with first.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield first, second
    await first.dispose()
    await second.dispose()


class Ticker:
    """Counts loop turns while it runs: proof that the loop was never put to sleep."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    def stop(self) -> None:
        self._task.cancel()


async def rows(engine: Database) -> list[int]:
    async with engine.connect() as conn:
        return [r.n for r in await conn.execute(text("SELECT n FROM t ORDER BY rowid"))]


async def test_two_connections_of_one_process_queue_on_the_gate(
    engines: tuple[Database, Database],
) -> None:
    first, second = engines
    ticker = Ticker()
    holding = asyncio.Event()

    async def slow_writer() -> None:
        async with first.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await asyncio.sleep(0.3)  # the transaction stays open across awaits

    async def second_writer() -> None:
        await holding.wait()
        async with second.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))

    await asyncio.gather(slow_writer(), second_writer())
    ticker.stop()
    assert await rows(first) == [1, 2]
    assert ticker.ticks >= 10, "the loop kept turning while the second writer waited"


async def test_a_failed_transaction_lets_the_next_one_in(
    engines: tuple[Database, Database],
) -> None:
    first, second = engines
    with pytest.raises(OperationalError):
        async with first.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.execute(text("INSERT INTO nowhere VALUES (1)"))
    async with asyncio.timeout(2):
        async with second.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
    assert await rows(first) == [2]


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the write lock, says so, holds it for ``seconds``."""
    script = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t VALUES (9)')\n"
        "print('holding', flush=True)\n"
        f"time.sleep({seconds}); c.execute('COMMIT')\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "holding"
    return other


async def test_another_process_is_waited_for_without_blocking_the_loop(
    engines: tuple[Database, Database], tmp_path: Path
) -> None:
    first, _ = engines
    other = hold_write_lock(tmp_path / "inline.db", 0.5)
    ticker = Ticker()
    async with first.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (1)"))
    ticker.stop()
    assert other.wait(5) == 0
    assert await rows(first) == [9, 1]
    assert ticker.ticks >= 10, "the loop kept turning while the other process held the lock"


async def test_a_lock_held_too_long_is_an_error_and_releases_the_gate(
    engines: tuple[Database, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = engines
    monkeypatch.setattr(sql, "BUSY_WAIT", 0.2)
    other = hold_write_lock(tmp_path / "inline.db", 1.5)
    with pytest.raises(OperationalError, match="locked"):
        async with first.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
    assert other.wait(5) == 0
    async with asyncio.timeout(2):
        async with second.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
    assert await rows(second) == [9, 2]


async def test_the_wal_goes_back_into_the_file_on_a_thread_not_in_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No commit copies the WAL into the file on the loop (SQLite's own autocheckpoint is
    off); every CHECKPOINT_EVERY commits the checkpoint thread does, all of it."""
    monkeypatch.setattr(sql, "CHECKPOINT_EVERY", 5)
    db = open_database(service_url(None, "walled", tmp_path))
    assert isinstance(db, sql.SqliteDatabase)
    on: list[int] = []
    checkpoint = sql.SqliteDatabase._run_checkpoint

    def spy(self: sql.SqliteDatabase) -> tuple[int, int, int] | None:
        on.append(threading.get_ident())
        return checkpoint(self)

    monkeypatch.setattr(sql.SqliteDatabase, "_run_checkpoint", spy)

    async def commit(n: int) -> None:
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        for n in range(3):
            await commit(n)
        assert on == []  # four commits: not yet
        assert db.writer().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        await commit(3)
        assert db._checkpoint is not None
        found = await db._checkpoint
        assert found is not None
        busy, frames, copied = found
        assert on != [threading.get_ident()] and len(on) == 1
        assert (busy, copied) == (0, frames) and frames > 0
        for n in range(4, 9):
            await commit(n)
        assert db._checkpoint is not None
        await db._checkpoint
        assert len(on) == 2
        assert await rows(db) == list(range(9))
    finally:
        await db.dispose()


async def test_the_wal_stays_small_under_a_steady_stream_of_commits(tmp_path: Path) -> None:
    """The checkpoint holds the file's gate, so it copies the whole WAL and the next write
    starts the WAL over; one running beside the commits always ended behind them, and the WAL
    grew by a page or more a commit (135 MB after 28,000 commits)."""
    db = open_database(service_url(None, "streamed", tmp_path))
    assert isinstance(db, sql.SqliteDatabase)
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
        for n in range(20 * sql.CHECKPOINT_EVERY):
            async with db.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:n, :p)"), {"n": n, "p": "x" * 300})
            await asyncio.sleep(0)  # the checkpoint gets its turns, the commits go on
        wal = await asyncio.to_thread(os.path.getsize, db.path + "-wal")
        assert wal < 2_000_000, f"the WAL grew to {wal:,} bytes"
    finally:
        await db.dispose()
