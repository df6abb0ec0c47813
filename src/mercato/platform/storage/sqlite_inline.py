"""SQLite for the embedded mode, run on the event loop's own thread.

SQLAlchemy's ``sqlite+aiosqlite`` dialect runs each statement on aiosqlite's worker thread:
a hand-over to the thread and a wake-up of the event loop per statement. For Mercato's
statements (a few rows by primary key, WAL commits without fsync) that hand-over cost many
times the statement itself: a prebuilt SELECT by key executed through SQLAlchemy cost
≈ 280 µs of CPU with the thread and 120–180 µs inline, side by side (the rest is SQLAlchemy's
own; ``docs/performance.md``).

So this module gives the dialect a connection with aiosqlite's interface whose statements
run inline, and keeps the two things the thread was for:

- **Never block the loop on a lock.** A transaction starts with ``BEGIN IMMEDIATE`` (see
  ``database.create_engine``), the only statement that waits for SQLite's write lock (in WAL
  mode readers never wait and the holder of the write lock never waits again). Within the
  process, every connection to one file first takes that file's ``asyncio.Lock`` (the
  *gate*), held until commit or rollback, so two connections of one process queue on the
  gate instead of on SQLite; a second process (a CLI command, another replica) is waited for
  with ``busy_timeout`` 0 and an asynchronous back-off, never with the loop asleep.
- **Statements that take long** (none of Mercato's do; a big migration might) hold up the
  loop while they run: the embedded mode is for a laptop, not a data warehouse.

Used by ``create_engine`` as the ``async_creator``; the dialect stays ``sqlite+aiosqlite``,
so SQLAlchemy's SQLite behaviour is unchanged.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

BUSY_WAIT = 30.0  # seconds to wait for another process's write lock, as busy_timeout did
# Per event loop (an asyncio.Lock belongs to one), per database file.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _gate(path: str) -> asyncio.Lock:
    if path in ("", ":memory:"):
        return asyncio.Lock()  # a database of its own
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(os.path.realpath(path), asyncio.Lock())


class InlineCursor:
    """The cursor interface SQLAlchemy's aiosqlite adapter uses, run inline."""

    def __init__(self, connection: InlineConnection):
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._rows = []

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        if sql.lstrip()[:5].upper() == "BEGIN":
            await self._connection.begin(sql)
            return self
        return self._run(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        return self._run(sql, parameters, many=True)

    def _run(self, sql: str, parameters: Any, *, many: bool) -> InlineCursor:
        cursor = self._connection._conn.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            self._rows = cursor.fetchall() if cursor.description else []
            self.description, self.rowcount = cursor.description, cursor.rowcount
            self.lastrowid = cursor.lastrowid
        finally:
            cursor.close()
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        taken, self._rows = self._rows[:n], self._rows[n:]
        return taken

    async def fetchall(self) -> list[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []


class _Immediately:
    """aiosqlite's request queue, as SQLAlchemy's isolation-level setter uses it."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter uses of ``aiosqlite.Connection``."""

    def __init__(self, conn: sqlite3.Connection, gate: asyncio.Lock):
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._gate = gate
        self._holds_gate = False
        self._tx = _Immediately()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def begin(self, sql: str) -> None:
        """Start a transaction: the file's gate first, then SQLite's write lock, waiting for
        another process's with an asynchronous back-off."""
        if not self._holds_gate:
            await self._gate.acquire()
            self._holds_gate = True
        give_up, pause = time.monotonic() + BUSY_WAIT, 0.001
        try:
            while True:
                try:
                    self._conn.execute(sql)
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > give_up:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        except BaseException:
            self._release()
            raise

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._release_if_done()

    async def rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._release_if_done()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._conn.close()
        finally:
            self._connection = None
            self._release()

    def stop(self) -> None:
        """Terminate (SQLAlchemy's forced close): close without waiting."""
        if self._connection is not None:
            self._conn.close()
            self._connection = None
        self._release()

    def _release_if_done(self) -> None:
        if not self._conn.in_transaction:
            self._release()

    def _release(self) -> None:
        if self._holds_gate:
            self._holds_gate = False
            self._gate.release()


def inline_creator(path: str) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: a connection to ``path`` whose
    statements run on the event loop's thread."""

    async def connect() -> InlineConnection:
        # The loop's thread opens it and only the loop's thread uses it; SQLAlchemy may
        # still close it from the garbage collector's thread, hence check_same_thread off.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        return InlineConnection(conn, _gate(path))

    return connect
