"""aiosqlite with one trip to its thread per statement.

SQLAlchemy's ``sqlite+aiosqlite`` dialect makes a cursor, executes, fetches and closes it as
four calls, each a round trip to aiosqlite's worker thread and back through the event loop.
Measured on the embedded system, those hand-overs were ≈ 280 per order and about a sixth of
its CPU (≈ 95 with one trip per statement). Here a cursor's ``execute`` does all four on the
worker thread in one call and keeps the rows; ``fetch*`` then answers from them. The work
still happens off the event loop (a wait for SQLite's write lock never stalls the loop), and
everything else is aiosqlite's.

Used by ``create_engine`` (``storage/database.py``) as the ``async_creator``; the dialect stays
``sqlite+aiosqlite``, so SQLAlchemy's SQLite behaviour is unchanged. Results are held in full,
which is how the dialect reads them anyway (it fetches all rows right after ``execute``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite

_Outcome = tuple[list[Any], Any, int, int | None]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor:
    """The cursor interface SQLAlchemy's aiosqlite adapter uses, one hop per statement."""

    def __init__(self, connection: OneHopConnection):
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._rows = []

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> OneHopCursor:
        return await self._go(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneHopCursor:
        return await self._go(sql, list(parameters), many=True)

    async def _go(self, sql: str, parameters: Any, *, many: bool) -> OneHopCursor:
        conn = self._connection
        outcome: _Outcome = await conn._execute(  # type: ignore[no-untyped-call]
            _run, conn._conn, sql, parameters, many
        )
        self._rows, self.description, self.rowcount, self.lastrowid = outcome
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


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)


def one_hop_creator(path: str) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: an aiosqlite connection to ``path``
    whose statements take one trip each."""

    async def connect() -> OneHopConnection:
        connection = OneHopConnection(lambda: sqlite3.connect(path), iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does: never hold up the exit
        await connection
        return connection

    return connect
