"""The run-time database (``storage/sql.py``): SQLAlchemy Core statements executed on the
driver give the values, rows, counts, transactions and errors that SQLAlchemy's engine gave —
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from mercato.platform.storage.database import (
    ensure_database,
    open_database,
    schema_engine,
    service_url,
)
from mercato.platform.storage.sql import Database

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("big", sa.BigInteger),
    sa.Column("price", sa.Numeric(18, 2)),
    sa.Column("ok", sa.Boolean),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("doc", sa.JSON),
)
ONE = sa.select(things).where(things.c.id == sa.bindparam("id"))
SOME = sa.select(things.c.id).where(things.c.id.in_(sa.bindparam("ids", expanding=True)))
BUMP = sa.update(things).where(things.c.n >= sa.bindparam("least")).values(n=things.c.n + 1)
ADD = things.insert()
NOW = datetime(2026, 12, 1, 22, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


async def _opened(template: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    url = service_url(template, "sql", tmp_path)
    await ensure_database(url)
    schema = schema_engine(url)
    async with schema.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await schema.dispose()
    db = open_database(url)
    yield db
    await db.dispose()


@pytest.fixture
async def db(template: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    async for opened in _opened(template, tmp_path):
        yield opened


@pytest.fixture
async def pg(postgres_template: str, tmp_path: Path) -> AsyncIterator[Database]:
    async for opened in _opened(postgres_template, tmp_path):
        yield opened


def row(id: str, n: int = 1, **more: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": id,
        "n": n,
        "big": None,
        "price": None,
        "ok": None,
        "at": None,
        "blob": None,
        "doc": None,
    }
    return base | more


async def test_values_are_those_sqlalchemys_engine_gives(db: Database) -> None:
    full = row(
        "a",
        7,
        big=2**40,
        price=Decimal("12.50"),
        ok=True,
        at=NOW,
        blob=b"\x00\xff",
        doc={"k": [1, "two"]},
    )
    async with db.begin() as conn:
        await conn.execute(ADD, full)
        await conn.execute(ADD, row("b"))
    async with db.connect() as conn:
        got = (await conn.execute(ONE, {"id": "a"})).one()
        empty = (await conn.execute(ONE, {"id": "b"})).one()
    engine = schema_engine(db.url)
    async with engine.connect() as conn:
        expected = (await conn.execute(ONE, {"id": "a"})).one()
    await engine.dispose()
    # A time with an offset comes back in UTC; SQLAlchemy hands SQLite's back naive.
    assert got.at == NOW and got.at.utcoffset() is not None
    assert expected.at.replace(tzinfo=expected.at.tzinfo or UTC) == NOW
    assert [v for k, v in got._mapping.items() if k != "at"] == [
        v for k, v in expected._mapping.items() if k != "at"
    ]
    assert (got.id, got.n, got.big, got.price, got.ok, got.blob, got.doc) == (
        "a",
        7,
        2**40,
        Decimal("12.50"),
        True,
        b"\x00\xff",
        {"k": [1, "two"]},
    )
    assert got[0] == "a" and got._mapping["n"] == 7
    assert (empty.price, empty.ok, empty.at, empty.doc) == (None, None, None, None)


async def test_results_counts_and_many_parameter_sets(db: Database) -> None:
    async with db.begin() as conn:
        await conn.execute(ADD, [row(f"t{i}", i) for i in range(5)])
        bumped = await conn.execute(BUMP, {"least": 3})
        returned = await conn.execute(
            sa.update(things)
            .where(things.c.id == sa.bindparam("k"))
            .values(n=0)
            .returning(things.c.id, things.c.n),
            {"k": "t1"},
        )
    assert bumped.rowcount == 2
    assert returned.all() == [("t1", 0)] and returned.rowcount == 1
    async with db.connect() as conn:
        assert sorted((await conn.execute(SOME, {"ids": ["t1", "t4", "zz"]})).scalars()) == [
            "t1",
            "t4",
        ]
        assert await conn.scalar(sa.select(sa.func.count()).select_from(things)) == 5
        assert (await conn.execute(ONE, {"id": "nope"})).first() is None
        with pytest.raises(NoResultFound):
            (await conn.execute(ONE, {"id": "nope"})).one()
        with pytest.raises(MultipleResultsFound):
            (await conn.execute(sa.select(things.c.id))).one_or_none()
        ns = await conn.execute(sa.text("SELECT n FROM things WHERE id = :id"), {"id": "t4"})
        assert ns.scalar_one() == 5


async def test_a_transaction_is_all_or_nothing(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.begin() as conn:
            await conn.execute(ADD, row("x"))
            await conn.execute(ADD, row("x"))  # the same key
    async with db.begin() as conn:
        await conn.execute(ADD, row("y"))
        savepoint = await conn.begin_nested()
        await conn.execute(ADD, row("z"))
        await savepoint.rollback()
    async with db.connect() as conn:
        assert (await conn.scalars(sa.select(things.c.id))).all() == ["y"]


async def test_connect_reads_and_starts_a_transaction_only_to_write(db: Database) -> None:
    async with db.connect() as conn:
        await conn.execute(ADD, row("dropped"))  # never committed: rolled back at the end
    async with db.connect() as conn:
        await conn.execute(ADD, row("kept"))
        await conn.commit()
        assert (await conn.scalars(sa.select(things.c.id))).all() == ["kept"]


async def test_a_statement_alone_is_a_transaction_of_its_own(db: Database) -> None:
    commits: list[int] = []
    db.on_commit.append(lambda: commits.append(1))
    assert (await db.execute_alone(ADD, row("a"))).rowcount == 1
    assert commits == [1]
    with pytest.raises(IntegrityError):
        await db.execute_alone(ADD, row("a"))  # the same key
    assert commits == [1], "a statement that failed committed nothing"
    async with db.connect() as conn:
        assert (await conn.scalars(sa.select(things.c.id))).all() == ["a"]


async def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    url = service_url(None, "reads", tmp_path)
    db = open_database(url)
    async with db.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
        await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    try:
        async with db.begin() as writer:
            await writer.execute(sa.text("INSERT INTO t VALUES (2)"))
            async with asyncio.timeout(1), db.connect() as reader:
                seen = (await reader.execute(sa.text("SELECT n FROM t"))).scalars().all()
            assert seen == [1], "the reader sees what was committed, without waiting"
        # Reads go to the writer's connection while no transaction holds it (its page cache
        # outlives its commits), so one reading connection reads there and elsewhere in turn.
        async with db.connect() as reader:
            assert (await reader.scalars(sa.text("SELECT n FROM t"))).all() == [1, 2]
            async with db.begin() as writer:
                await writer.execute(sa.text("INSERT INTO t VALUES (3)"))
                seen = (await reader.scalars(sa.text("SELECT n FROM t"))).all()
                assert seen == [1, 2], "never what a transaction has not committed"
            assert (await reader.scalars(sa.text("SELECT n FROM t"))).all() == [1, 2, 3]
    finally:
        await db.dispose()


async def test_many_rows_inserted_with_returning_are_one_statement(db: Database) -> None:
    dialect = postgresql if db.name == "postgresql" else sqlite
    claim = dialect.insert(things).on_conflict_do_nothing().returning(things.c.id)
    async with db.begin() as conn:
        await conn.execute(ADD, row("old"))
        fresh = await conn.execute(claim, [{"id": i, "n": 1, "at": NOW} for i in ("a", "old", "b")])
    assert sorted(fresh.scalars()) == ["a", "b"], "the row already there is not returned"
    async with db.begin() as conn:  # in chunks of a few sizes on PostgreSQL, one by one on SQLite
        many = await conn.execute(claim, [{"id": f"m{i}", "n": i} for i in range(300)])
    assert len(many.all()) == many.rowcount == 300
    async with db.connect() as conn:
        got = (await conn.execute(ONE, {"id": "b"})).one()
    assert got.at.replace(tzinfo=UTC) == NOW, "each row's values converted as its column's"


async def test_a_postgresql_transaction_is_its_statements_between_begin_and_commit(
    pg: Database,
) -> None:
    """No statement of asyncpg's own reset (``RESET ALL``…) when the connection goes back to
    the pool: a round trip per transaction with nothing to undo."""
    db = pg
    sent: list[str] = []
    async with db.begin() as conn:
        raw = conn.raw  # type: ignore[attr-defined]
        raw.add_query_logger(lambda logged: sent.append(logged.query))
        await conn.execute(ADD, row("a"))
    assert [q.split()[0].upper() for q in sent] == ["BEGIN;", "INSERT", "COMMIT;"], sent
    async with db.connect() as conn:  # the same (only) idle connection, as it was left
        assert not conn.raw.is_in_transaction()  # type: ignore[attr-defined]
        assert (await conn.execute(ONE, {"id": "a"})).one().n == 1
    words = [q.split()[0].upper() for q in sent]
    assert words == ["BEGIN;", "INSERT", "COMMIT;", "SELECT"], sent


@pytest.mark.parametrize(
    "stored",
    [
        "2026-12-01 22:30:15.123456",  # as SQLAlchemy writes it
        "2026-12-01 22:30:15",
        "2026-12-01 22:30:15.123",
        "2026-12-01T22:30:15.5",
        "2026-12-01 22:30",
        "2026-12-01",  # a bare date: not read as "date, then a time of +00:00"
        "2026-12-01 22:30:15+00:00",
    ],
)
async def test_sqlite_times_are_read_as_utc_whatever_form_they_were_stored_in(
    tmp_path: Path, stored: str
) -> None:
    db = open_database(service_url(None, "sql", tmp_path))
    schema = schema_engine(db.url)
    async with schema.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            sa.text("INSERT INTO things (id, n, at) VALUES ('a', 1, :at)"), {"at": stored}
        )
        expected = (await conn.execute(ONE, {"id": "a"})).one().at  # SQLAlchemy's own reading
    await schema.dispose()
    async with db.connect() as conn:
        got = (await conn.execute(ONE, {"id": "a"})).one().at
    await db.dispose()
    assert got == expected.replace(tzinfo=expected.tzinfo or UTC)
    assert got.tzinfo is UTC


async def test_a_postgresql_statement_alone_is_one_round_trip(pg: Database) -> None:
    sent: list[str] = []
    async with pg.connect() as conn:  # the pool's one connection, used again below
        conn.raw.add_query_logger(lambda logged: sent.append(logged.query))  # type: ignore[attr-defined]
    await pg.execute_alone(ADD, row("a"))
    assert [q.split()[0].upper() for q in sent] == ["INSERT"], sent  # no BEGIN, no COMMIT
    async with pg.connect() as conn:
        assert not conn.raw.is_in_transaction()  # type: ignore[attr-defined]
        assert (await conn.execute(ONE, {"id": "a"})).one().n == 1


async def test_a_postgresql_transaction_whose_only_write_is_its_last_is_one_round_trip(
    pg: Database,
) -> None:
    """``execute_last``: sent alone when nothing wrote before it (a unit of work whose only
    write is its outbox row); within the transaction otherwise, and when the rows would go as
    more than one statement. Each way it is one transaction, counted once."""
    sent: list[str] = []
    commits: list[int] = []
    pg.on_commit.append(lambda: commits.append(1))
    async with pg.connect() as conn:  # the pool's one connection, used again below
        conn.raw.add_query_logger(lambda logged: sent.append(logged.query))  # type: ignore[attr-defined]

    async def words() -> list[str]:
        await asyncio.sleep(0)  # asyncpg hands the query to its loggers with call_soon
        found = [q.split()[0].upper() for q in sent]
        sent.clear()
        return found

    async with pg.begin() as conn:
        await conn.execute(ONE, {"id": "a"})  # a read writes nothing
        await conn.execute_last(ADD, [row("a")])
        assert not conn.raw.is_in_transaction()  # type: ignore[attr-defined]
    assert await words() == ["SELECT", "INSERT"] and len(commits) == 1

    async with pg.begin() as conn:
        await conn.execute(ADD, row("b"))
        await conn.execute_last(ADD, row("c"))
    assert await words() == ["BEGIN;", "INSERT", "INSERT", "COMMIT;"] and len(commits) == 2

    async with pg.begin() as conn:  # three rows: two multi-row statements, one transaction
        await conn.execute_last(ADD.returning(things.c.id), [row("d"), row("e"), row("f")])
    assert await words() == ["BEGIN;", "INSERT", "INSERT", "COMMIT;"] and len(commits) == 3

    async with pg.begin() as conn:  # text may have effects for the transaction: it begins
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7)"))
        assert conn.raw.is_in_transaction()  # type: ignore[attr-defined]
    assert await words() == ["BEGIN;", "SELECT", "COMMIT;"]

    with pytest.raises(RuntimeError):
        async with pg.begin() as conn:
            await conn.execute(ADD, row("g"))
            await conn.execute_last(ADD, row("h"))
            raise RuntimeError("the transaction fails after its last statement")
    async with pg.connect() as conn:
        found = await conn.scalars(sa.select(things.c.id).order_by(things.c.id))
    assert found.all() == ["a", "b", "c", "d", "e", "f"]


async def test_a_postgres_pool_opens_at_most_its_size(
    postgres_template: str, tmp_path: Path
) -> None:
    """MERCATO_DATABASE_POOL_SIZE bounds what one service opens: more concurrent transactions than
    that wait for a connection instead of opening another backend."""
    url = service_url(postgres_template, "pool", tmp_path)
    await ensure_database(url)
    db = open_database(url, pool_size=2)
    try:

        async def backend() -> int:
            async with db.connect() as conn:
                pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
                await conn.execute(sa.text("SELECT pg_sleep(0.05)"))
                return int(pid)

        pids = await asyncio.gather(*(backend() for _ in range(6)))
        assert len(set(pids)) == 2
    finally:
        await db.dispose()
