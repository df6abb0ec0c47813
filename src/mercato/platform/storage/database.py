"""One service's database: URL handling, engine set-up, creating the database if missing."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from mercato.platform.storage.sql import BUSY_WAIT, Database, PostgresDatabase, SqliteDatabase

SELECT_1 = text("SELECT 1")


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


# SQLSTATEs of "that database exists": duplicate_database, and unique_violation, which a
# CREATE DATABASE racing another one for the same name raises on the pg_database catalog.
DATABASE_EXISTS = ("42P04", "23505")


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key for ``name`` (its CRC-32: stable across processes)."""
    return zlib.crc32(name.encode())


async def ensure_database(url: URL) -> None:
    """Create a PostgreSQL database if it does not exist (SQLite creates files itself).

    Safe for many processes starting at once (replicas on a fresh server): they take turns on
    an advisory lock keyed by the database's name on the server's ``postgres`` database, and
    a database that another process created all the same counts as created."""
    if not is_postgres(url) or not url.database:
        return
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            # A session lock (CREATE DATABASE cannot run in a transaction); it ends with the
            # connection, below.
            key = advisory_key(f"mercato.create.{url.database}")
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not found:
                quoted = url.database.replace('"', '""')
                try:
                    await conn.execute(text(f'CREATE DATABASE "{quoted}"'))
                except DBAPIError as exc:  # created by a process that takes no such lock
                    if getattr(exc.orig, "sqlstate", None) not in DATABASE_EXISTS:
                        raise
    finally:
        await admin.dispose()


def open_database(url: URL, pool_size: int = 20) -> Database:
    """The database a service runs on (``sql.py``): statements on the driver itself;
    ``pool_size`` bounds a PostgreSQL pool (SQLite opens its own few connections)."""
    dialect_class: Any = url.get_dialect()
    dialect = dialect_class(dbapi=dialect_class.import_dbapi())
    if is_postgres(url):
        return PostgresDatabase(url, dialect, pool_size)
    return SqliteDatabase(url, dialect)


def schema_engine(url: URL) -> AsyncEngine:
    """A SQLAlchemy engine for Alembic's migrations, used at start-up and disposed."""
    if is_postgres(url):
        return create_async_engine(url, poolclass=NullPool)
    # BEGIN IMMEDIATE: a second process migrating the same file waits at the start (up to
    # BUSY_WAIT) instead of failing when it upgrades a read lock.
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_WAIT})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def ping(db: Database) -> None:
    async with db.connect() as conn:
        await conn.execute(SELECT_1)
