"""One service's database: URL handling, engine set-up, creating the database if missing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mercato.platform.storage.sqlite_inline import inline_creator


class DatabaseConfigError(ValueError):
    pass


def service_url(template: str | None, service: str, data_dir: Path) -> URL:
    """The async SQLAlchemy URL of one service's database.

    ``template`` may contain ``{service}``; ``None`` means a SQLite file in the data directory.
    """
    if not template:
        data_dir.mkdir(parents=True, exist_ok=True)
        return make_url(f"sqlite+aiosqlite:///{data_dir / (service + '.db')}")
    try:
        url = make_url(template.replace("{service}", service))
    except ArgumentError as exc:
        raise DatabaseConfigError(f"MERCATO_DATABASE_URL is not a database URL: {exc}") from exc
    driver = url.drivername.split("+")[0]
    if driver in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    if driver == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise DatabaseConfigError(
        f"unsupported database {url.drivername!r}: use postgresql://… or sqlite:///…"
    )


def is_postgres(url: URL) -> bool:
    return url.get_backend_name() == "postgresql"


async def ensure_database(url: URL) -> None:
    """Create a PostgreSQL database if it does not exist (SQLite creates files itself)."""
    if not is_postgres(url) or not url.database:
        return
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not found:
                quoted = url.database.replace('"', '""')
                try:
                    await conn.execute(text(f'CREATE DATABASE "{quoted}"'))
                except Exception as exc:  # another process created it first
                    if "already exists" not in str(exc):
                        raise
    finally:
        await admin.dispose()


def create_engine(url: URL, **kwargs: Any) -> AsyncEngine:
    if is_postgres(url):
        return create_async_engine(url, pool_size=10, max_overflow=10, **kwargs)
    # SQLite: one connection per database and process. SQLite writes one transaction at a
    # time anyway; with several connections a waiting writer sleeps in SQLite's busy handler
    # (back-off of up to 100 ms a try), while one connection queues the transactions in the
    # pool, first come first served, at no cost. Statements run on the event loop's thread
    # (see sqlite_inline.py: a second connection to the same file waits on a gate, another
    # process's write lock with an asynchronous back-off).
    engine = create_async_engine(
        url,
        async_creator=inline_creator(url.database or ""),
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        **kwargs,
    )

    # BEGIN IMMEDIATE: take the write lock when a transaction starts, so that another process
    # on the same file (a CLI command, a second replica) waits at the start instead of
    # failing with "database is locked" when it tries to upgrade its lock. busy_timeout 0:
    # that wait is sqlite_inline's, asynchronous; SQLite's own would put the loop to sleep.
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # On the DBAPI cursor: SQLAlchemy's statement execution around it cost as much
        # as the transaction's own statements.
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
        finally:
            cursor.close()

    return engine


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))
