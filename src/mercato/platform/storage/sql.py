"""A service's database at run time: SQLAlchemy Core statements executed on the driver itself.

SQLAlchemy builds and compiles the statements (and Alembic migrates the schema); executing
them through SQLAlchemy's asyncio engine cost several times the statements themselves: a
greenlet switch per statement, the pool's checkout and reset-on-return, an execution context
and a result object per call. Measured on one SQLite transaction of three statements (a
SELECT by key, an UPDATE, an outbox INSERT), CPU per transaction: ≈ 970 µs through the engine,
≈ 180 µs on the driver (``docs/performance.md``).

So a :class:`Database` compiles each statement once per dialect and set of parameter names
(:class:`_Plan`, with SQLAlchemy's own bind and result processors, so the values are those
SQLAlchemy would give) and runs it on ``sqlite3`` or ``asyncpg`` directly:

- ``db.begin()``: a transaction, committed when the block ends, rolled back if it raises.
- ``db.connect()``: for reading. Statements run in autocommit until the first one that writes,
  which starts a transaction (committed by ``conn.commit()``, else rolled back at the end).
- ``db.execute_alone(statement, params)``: one statement that is a transaction by itself.
  On PostgreSQL it is sent alone, which PostgreSQL runs as a transaction of its own: one round
  trip, where ``begin()`` takes three (BEGIN, the statement, COMMIT).
- ``conn.execute_last(statement, params)``: a transaction's last statement; on PostgreSQL,
  when it is also the transaction's first write, it is sent alone in the same way (a unit of
  work whose only write is its outbox row: a product viewed).
- ``db.dedicated()``: a connection of its own, in autocommit (the relay's advisory lock).

SQLite (the embedded mode) runs on the event loop's thread: a writer connection behind the
file's gate (an ``asyncio.Lock`` per file and event loop, taken at ``BEGIN IMMEDIATE`` and
released at commit or rollback), so a process's transactions queue on the gate, not in SQLite;
another process's write lock is waited for with ``busy_timeout`` 0 and an asynchronous
back-off (up to :data:`BUSY_WAIT`), never with the loop asleep. Reads wait for nothing
(WAL): they run on the writer's connection while no transaction holds it (its page cache
outlives its own commits), else on a second connection. The WAL is copied back into the
database file (checkpointed) by a worker thread every :data:`CHECKPOINT_EVERY` commits, not
by the commit that fills it: done inline, a checkpoint held the loop 5–11 ms (≈ 5 times a
second under the bench's load). The checkpoint holds the file's gate, so the process's
writers wait for it without the loop waiting. PostgreSQL runs on an asyncpg pool.

Errors are SQLAlchemy's (``sqlalchemy.exc.IntegrityError``, ``OperationalError``…) wrapping
the driver's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import operator
import os
import sqlite3
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from sqlalchemy import DateTime, bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.sql import ClauseElement, CompoundSelect, Select
from sqlalchemy.sql.compiler import SQLCompiler

from mercato.platform.waits import within

BUSY_WAIT = 30.0  # seconds to wait for another process's SQLite write lock
CHECKPOINT_EVERY = 100  # commits of one process to one SQLite file between checkpoints
# One thread runs every file's checkpoints (SQLite releases the GIL while it copies).
_CHECKPOINTS = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")

log = structlog.get_logger(__name__)
MULTIROW = 256  # rows per multi-row INSERT at most (PostgreSQL)
PLANS = 2048  # compiled statements kept per dialect (statements built per call come and go)
Params = Mapping[str, Any]

# ---------------------------------------------------------------------------- statements


class _Row(tuple[Any, ...]):
    """A result row: a tuple whose columns are also attributes (as SQLAlchemy's Row)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=False))

    def _asdict(self) -> dict[str, Any]:
        return self._mapping


_row_types: dict[tuple[str, ...], type[_Row]] = {}


def _row_type(names: Sequence[str]) -> type[_Row]:
    key = tuple(names)
    found = _row_types.get(key)
    if found is None:
        attrs: dict[str, Any] = {"__slots__": (), "_fields": key}
        for i, name in enumerate(key):
            if name.isidentifier() and name not in attrs and not name.startswith("_"):
                attrs[name] = property(operator.itemgetter(i))
        found = _row_types[key] = type("Row", (_Row,), attrs)
    return found


Processor = Callable[[Any], Any] | None


class _Plan:
    """One statement compiled for one dialect and one set of parameter names: its SQL, where
    each positional parameter comes from, and how to turn the driver's rows into values."""

    __slots__ = (
        "binds",
        "compiled",
        "expanding",
        "plain_read",
        "reads",
        "results",
        "returns_rows",
        "row",
        "source",
        "sql",
    )

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        keys: Sequence[str],
        source: ClauseElement | None = None,
    ):
        self.source = source if source is not None else statement  # the cache's key, kept
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys)))
        self.compiled = compiled
        self.sql = compiled.string
        self.expanding = bool(compiled.post_compile_params or compiled.literal_execute_params)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        processors = cast(dict[str, Processor], compiled._bind_processors)
        self.binds = [
            (by_name[name], processors.get(name)) for name in (compiled.positiontup or ())
        ]
        columns = compiled._result_columns
        if columns:
            self.row: type[_Row] | None = _row_type([c.keyname for c in columns])
            found = [_result_processor(c.type, dialect) for c in columns]
            self.results: list[Processor] | None = found if any(found) else None
        else:
            self.row, self.results = None, None
        dml = compiled.isinsert or compiled.isupdate or compiled.isdelete
        dml = dml or getattr(statement, "_for_update_arg", None) is not None  # locks: a write
        # Reads never start a transaction in db.connect(); text is judged by its first word.
        self.reads = not dml and (self.row is not None or _text_reads(self.sql))
        # Nor, in db.begin() on PostgreSQL, a SELECT built with SQLAlchemy (not text, which
        # may be a function with effects for the transaction, as an advisory lock is).
        self.plain_read = self.reads and isinstance(statement, Select | CompoundSelect)
        # PostgreSQL: fetch the rows, or only the status (its row count); decided once.
        self.returns_rows = (
            self.row is not None or _text_reads(self.sql) or " RETURNING " in self.sql
        )

    def arguments(self, params: Params) -> tuple[str, list[Any]]:
        """The SQL and the positional parameters for one set of ``params``."""
        if self.expanding:
            state = self.compiled.construct_expanded_state(dict(params))
            values, procs = state.parameters, cast(dict[str, Processor], state.processors)
            expanded = []
            for name in state.positiontup or ():
                convert = procs.get(name)
                expanded.append(convert(values[name]) if convert is not None else values[name])
            return state.statement, expanded
        out = []
        for bind, process in self.binds:
            key = bind.key
            if key in params:
                value = params[key]
            elif bind.callable is not None:
                value = bind.callable()
            elif bind.required:
                raise sa_exc.StatementError(
                    f"A value is required for bind parameter {key!r}", self.sql, dict(params), None
                )
            else:
                value = bind.value
            out.append(process(value) if process is not None else value)
        return self.sql, out

    def rows(self, raw: Sequence[Sequence[Any]], names: Callable[[], Sequence[str]]) -> list[Any]:
        if not raw:
            return []
        row = self.row or _row_type(names())
        results = self.results
        if results is None:
            return [row(r) for r in raw]
        return [
            row([p(v) if p is not None else v for p, v in zip(results, r, strict=True)])
            for r in raw
        ]


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    try:
        found = cast(Processor, type_._cached_result_processor(dialect, None))
    except (sa_exc.InvalidRequestError, TypeError):
        # asyncpg's numeric types choose by the column's type code, which is only known
        # once rows come back; asyncpg returns NUMERIC as Decimal already: nothing to do.
        return cast(Processor, type_._cached_result_processor(dialect, NUMERIC_OID))
    if isinstance(type_, DateTime) and type_.timezone and dialect.name == "sqlite":
        # SQLite keeps no offset, and SQLAlchemy hands the time back naive; what is stored is
        # UTC (every write is), so it comes back as UTC, as PostgreSQL gives it.
        return _in_utc(found)
    return found


def _in_utc(parse: Processor) -> Processor:
    def process(value: Any) -> datetime | None:
        if value.__class__ is str and len(value) > 10:
            # What SQLAlchemy stores ("2026-12-03 19:44:44.278111"), read as UTC in one step:
            # a fifth of the time of parsing, then replacing the zone. (Not a bare date:
            # "2026-12-03+00:00" would read as a naive midnight.)
            try:
                return datetime.fromisoformat(value + "+00:00")
            except ValueError:
                pass  # another form: SQLAlchemy's parser decides
        moment = parse(value) if parse is not None else value
        if moment is None or moment.tzinfo is not None:
            return cast(datetime | None, moment)
        return cast(datetime, moment.replace(tzinfo=UTC))

    return process


NUMERIC_OID = 1700


class _Plans:
    """Compiled statements of one dialect, least recently used dropped past :data:`PLANS`."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._plans: OrderedDict[tuple[int, tuple[str, ...]], _Plan] = OrderedDict()

    def get(self, statement: ClauseElement, keys: tuple[str, ...]) -> _Plan:
        return self._cached((id(statement), keys), statement, lambda: statement, keys)

    def rows_inserted(self, statement: Any, keys: tuple[str, ...], count: int) -> _Plan:
        """An INSERT … RETURNING of ``count`` parameter sets as one multi-row INSERT (as
        SQLAlchemy's "insertmanyvalues" does), its parameters named ``<key>__<n>``."""

        def build() -> ClauseElement:
            column = statement.table.c
            rows = [
                {k: bindparam(f"{k}__{n}", type_=column[k].type) for k in keys}
                for n in range(count)
            ]
            return cast(ClauseElement, statement.values(rows))

        return self._cached((id(statement), (*keys, f"*{count}")), statement, build, ())

    def _cached(
        self,
        key: tuple[int, tuple[str, ...]],
        source: ClauseElement,
        build: Callable[[], ClauseElement],
        keys: tuple[str, ...],
    ) -> _Plan:
        plan = self._plans.get(key)
        if plan is None or plan.source is not source:
            plan = self._plans[key] = _Plan(build(), self.dialect, keys, source)
            if len(self._plans) > PLANS:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan


def _text_reads(sql: str) -> bool:
    return sql.lstrip()[:6].upper() in ("SELECT", "PRAGMA")


# ---------------------------------------------------------------------------- results


class Scalars(list[Any]):
    """The first column of each row (``result.scalars()``)."""

    def all(self) -> list[Any]:
        return list(self)

    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        return _one(self)

    def one_or_none(self) -> Any:
        return _one_or_none(self)


def _one(rows: Sequence[Any]) -> Any:
    if len(rows) != 1:
        raise (sa_exc.NoResultFound if not rows else sa_exc.MultipleResultsFound)(
            f"expected one row, got {len(rows)}"
        )
    return rows[0]


def _one_or_none(rows: Sequence[Any]) -> Any:
    if len(rows) > 1:
        raise sa_exc.MultipleResultsFound(f"expected at most one row, got {len(rows)}")
    return rows[0] if rows else None


class Result:
    """What a statement returned: its rows (all fetched) and the rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int):
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        return _one(self._rows)

    def one_or_none(self) -> Any:
        return _one_or_none(self._rows)

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return _one(self._rows)[0]

    def scalar_one_or_none(self) -> Any:
        row = _one_or_none(self._rows)
        return None if row is None else row[0]

    def scalars(self) -> Scalars:
        return Scalars(r[0] for r in self._rows)


# ---------------------------------------------------------------------------- connections


class Connection:
    """A statement runner on one driver connection; see the module docstring for the modes."""

    def __init__(self, db: Database):
        self.db = db
        self.dialect = db.dialect
        self.statements = 0  # run so far (a transaction's span counts them)

    async def execute(
        self, statement: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Result:
        self.statements += 1
        many = isinstance(params, list | tuple)
        sets = cast(Sequence[Params], params) if many else [cast(Params, params or {})]
        if many and not sets:
            return Result([], 0)
        plan = self.db.plans.get(statement, tuple(sets[0]))
        if many and plan.row is not None and plan.compiled.isinsert and self.db.multirow:
            return await self._insert_returning(statement, sets)
        try:
            return await self._run(plan, sets, many)
        except sa_exc.SQLAlchemyError:
            raise
        except self.db.driver_errors as error:
            raise self.db.wrap(plan.sql, sets, error) from error

    async def _insert_returning(self, statement: ClauseElement, sets: Sequence[Params]) -> Result:
        """Many rows inserted with RETURNING, as a few multi-row INSERTs (one round trip each):
        chunks of power-of-two sizes, so a handful of compiled statements serve any count."""
        rows: list[Any] = []
        rowcount, start, keys = 0, 0, tuple(sets[0])
        while start < len(sets):
            size = min(MULTIROW, 1 << ((len(sets) - start).bit_length() - 1))
            chunk = sets[start : start + size]
            start += size
            plan = self.db.plans.rows_inserted(statement, keys, size)
            params = {f"{k}__{n}": v for n, one in enumerate(chunk) for k, v in one.items()}
            try:
                done = await self._run(plan, [params], False)
            except self.db.driver_errors as error:
                raise self.db.wrap(plan.sql, chunk, error) from error
            rows += done.all()
            rowcount += done.rowcount
        return Result(rows, rowcount)

    async def execute_last(
        self, statement: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Result:
        """The transaction's last statement: only its commit follows. On PostgreSQL, when
        nothing before it wrote, it is sent alone (see ``execute_alone``)."""
        return await self.execute(statement, params)

    async def scalar(self, statement: ClauseElement, params: Params | None = None) -> Any:
        return (await self.execute(statement, params)).scalar()

    async def scalars(self, statement: ClauseElement, params: Params | None = None) -> Scalars:
        return (await self.execute(statement, params)).scalars()

    async def commit(self) -> None:
        """End the transaction a write started in ``db.connect()`` (nothing if none did)."""

    async def rollback(self) -> None:
        """Undo the transaction a write started in ``db.connect()`` (nothing if none did)."""

    @property
    def closed(self) -> bool:
        """Whether the connection is known to be gone (the server ended it)."""
        return False

    def begin_nested(self) -> Savepoint:
        """A savepoint inside the transaction: ``sp = await conn.begin_nested()``."""
        return Savepoint(self)

    async def _run(self, plan: _Plan, sets: Sequence[Params], many: bool) -> Result:
        raise NotImplementedError

    async def _statement(self, sql: str) -> None:
        raise NotImplementedError


class Savepoint:
    """``sp = await conn.begin_nested()``; then ``await sp.commit()`` or ``sp.rollback()``."""

    _count = 0

    def __init__(self, conn: Connection):
        Savepoint._count += 1
        self.conn = conn
        self.name = f"sp_{Savepoint._count}"

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> Savepoint:
        await self.conn._statement(f"SAVEPOINT {self.name}")
        return self

    async def commit(self) -> None:
        await self.conn._statement(f"RELEASE SAVEPOINT {self.name}")

    async def rollback(self) -> None:
        await self.conn._statement(f"ROLLBACK TO SAVEPOINT {self.name}")
        await self.conn._statement(f"RELEASE SAVEPOINT {self.name}")


class Database:
    """One service's database; ``open_database`` in ``database.py`` makes one."""

    name: str
    driver_errors: tuple[type[BaseException], ...]
    multirow = False  # many rows with RETURNING as multi-row INSERTs (else one by one)

    def __init__(self, url: URL, dialect: Dialect):
        self.url = url
        self.dialect = dialect
        self.plans = _Plans(dialect)
        self.on_commit: list[Callable[[], None]] = []

    def committed(self) -> None:
        for callback in self.on_commit:
            callback()

    def wrap(self, sql: str, params: Any, error: BaseException) -> sa_exc.DBAPIError:
        raise NotImplementedError

    def begin(self) -> AbstractAsyncContextManager[Connection]:
        raise NotImplementedError

    async def execute_alone(self, statement: ClauseElement, params: Params | None = None) -> Result:
        """``statement``, with one set of parameters, in a transaction of its own (see the
        module's docstring)."""
        async with self.begin() as conn:  # on PostgreSQL the first write, so sent alone
            return await conn.execute_last(statement, params)

    def connect(self) -> AbstractAsyncContextManager[Connection]:
        raise NotImplementedError

    async def dedicated(self) -> Connection:
        raise NotImplementedError

    async def close_dedicated(self, conn: Connection) -> None:
        raise NotImplementedError

    async def has_table(self, name: str) -> bool:
        raise NotImplementedError

    async def dispose(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------- SQLite

# Per event loop (an asyncio.Lock belongs to one), per database file.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _gate(path: str) -> asyncio.Lock:
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(os.path.realpath(path), asyncio.Lock())


def _sqlite_connect(path: str) -> sqlite3.Connection:
    # One thread uses it: the loop's, or the checkpoint thread for its own connection. It may
    # be opened on one thread and closed on another (dispose, the garbage collector), hence
    # check_same_thread off.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "busy_timeout=0",
        "foreign_keys=ON",
        "wal_autocheckpoint=0",  # the checkpoint thread's work (SqliteDatabase.finish)
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class SqliteConnection(Connection):
    def __init__(self, db: SqliteDatabase, raw: sqlite3.Connection | None, writing: bool):
        super().__init__(db)
        self._db = db
        self.raw = raw if raw is not None else db.reader()
        self.writing = writing  # holds the gate and a BEGIN IMMEDIATE transaction

    async def _run(self, plan: _Plan, sets: Sequence[Params], many: bool) -> Result:
        on = self.raw
        if not self.writing:
            if not plan.reads:
                await self._upgrade()
                on = self.raw
            elif not on.in_transaction:  # not inside a savepoint of this reader's
                on = self._db.idle_writer() or on
        cursor = on.cursor()
        try:
            if many and not plan.expanding and plan.row is None:
                cursor.executemany(plan.sql, [plan.arguments(p)[1] for p in sets])
                raw = cursor.fetchall() if cursor.description else []
                rowcount = cursor.rowcount
            else:
                raw, rowcount = [], 0
                for params in sets:
                    sql, args = plan.arguments(params)
                    cursor.execute(sql, args)
                    if cursor.description:
                        raw.extend(cursor.fetchall())
                    rowcount += max(cursor.rowcount, 0)
                if not many and cursor.description and cursor.rowcount < 0:
                    rowcount = -1
            description = cursor.description
        finally:
            cursor.close()
        return Result(plan.rows(raw, lambda: [d[0] for d in description]), rowcount)

    async def _statement(self, sql: str) -> None:
        self.raw.execute(sql)

    async def _upgrade(self) -> None:
        """A write in ``db.connect()``: from here on, a transaction on the writer."""
        self.raw = await self._db.start()
        self.writing = True

    async def commit(self) -> None:
        if self.writing:
            self.writing = False
            self._db.finish(self.raw, commit=True)
            self.raw = self._db.reader()

    async def rollback(self) -> None:
        if self.writing:
            self.writing = False
            self._db.finish(self.raw, commit=False)
            self.raw = self._db.reader()


class SqliteDatabase(Database):
    name = "sqlite"
    driver_errors = (sqlite3.Error,)

    def __init__(self, url: URL, dialect: Dialect):
        super().__init__(url, dialect)
        self.path = url.database or ""
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._memory = self.path in ("", ":memory:")
        self._commits = 0  # since the last checkpoint was asked for
        self._checkpoint: asyncio.Task[tuple[int, int, int] | None] | None = None
        self._disposing = False
        self._checkpointer: sqlite3.Connection | None = None  # the checkpoint thread's

    def wrap(self, sql: str, params: Any, error: BaseException) -> sa_exc.DBAPIError:
        return cast(
            sa_exc.DBAPIError,
            sa_exc.DBAPIError.instance(sql, params, cast(Exception, error), sqlite3.Error),
        )

    def writer(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = _sqlite_connect(self.path)
        return self._writer

    def idle_writer(self) -> sqlite3.Connection | None:
        """The writer, for a read, while no transaction holds it. A connection's page cache
        lasts only while no other connection changes the file: the reader's is dropped at its
        first read after any commit, the writer's survives its own commits. So a read on the
        reader after a write reads every page it needs from the file again; on the idle
        writer it finds them in memory (``docs/performance.md``)."""
        raw = self._writer
        return raw if raw is not None and not raw.in_transaction else None

    def reader(self) -> sqlite3.Connection:
        if self._memory:  # a private in-memory database: one connection sees it
            return self.writer()
        if self._reader is None:
            self._reader = _sqlite_connect(self.path)
        return self._reader

    async def start(self) -> sqlite3.Connection:
        """The writer, holding the file's gate and SQLite's write lock (``BEGIN IMMEDIATE``),
        waiting for another process's lock with an asynchronous back-off."""
        gate = self._gate()
        await gate.acquire()
        try:
            raw = self.writer()
            give_up, pause = time.monotonic() + BUSY_WAIT, 0.001
            while True:
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    return raw
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() > give_up:
                        raise self.wrap("BEGIN IMMEDIATE", (), error) from error
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        except BaseException:
            gate.release()
            raise

    _gate_loop: asyncio.AbstractEventLoop | None = None
    _gate_lock: asyncio.Lock

    def _gate(self) -> asyncio.Lock:
        """The file's gate on the running loop (looked up once per loop, not per transaction)."""
        loop = asyncio.get_running_loop()
        if self._gate_loop is not loop:
            self._gate_lock = asyncio.Lock() if self._memory else _gate(self.path)
            self._gate_loop = loop
        return self._gate_lock

    def finish(self, raw: sqlite3.Connection, commit: bool) -> None:
        gate = self._gate()
        try:
            if commit:
                try:
                    raw.commit()
                except sqlite3.Error as error:
                    raw.rollback()
                    raise self.wrap("COMMIT", (), error) from error
                self.committed()
                self._commits += 1
                if self._commits >= CHECKPOINT_EVERY and not self._memory:
                    self._ask_checkpoint()
            elif raw.in_transaction:
                raw.rollback()
        finally:
            gate.release()

    def _ask_checkpoint(self) -> None:
        """Have the checkpoint thread copy the WAL into the file, unless it is at it."""
        if not self._disposing and (self._checkpoint is None or self._checkpoint.done()):
            self._commits = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_gated())

    async def _checkpoint_gated(self) -> tuple[int, int, int] | None:
        """The checkpoint, holding the file's gate: no commit of this process lands while it
        copies, so it copies the whole WAL and the next write starts the WAL over. One that
        ran beside the commits would always end behind them, and the WAL would grow without
        end under a steady stream of writes."""
        async with self._gate():
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(_CHECKPOINTS, self._run_checkpoint)
            except RuntimeError as error:  # the executor is shut down: the interpreter exits
                log.warning("sqlite checkpoint not run", path=self.path, error=str(error))
                return None

    def _run_checkpoint(self) -> tuple[int, int, int] | None:
        """On the checkpoint thread: PASSIVE, so it waits for no reader or writer; what a
        reader still needs stays in the WAL until the next one. SQLite's answer (busy, the
        WAL's frames, the frames now in the file), or None: a failure leaves the WAL as it
        is (nothing in it is lost) for the next checkpoint to try."""
        try:
            if self._checkpointer is None:
                self._checkpointer = _sqlite_connect(self.path)
            busy, frames, copied = self._checkpointer.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            return busy, frames, copied
        except sqlite3.Error as error:
            log.warning("sqlite checkpoint failed", path=self.path, error=str(error))
            return None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[SqliteConnection]:
        conn = SqliteConnection(self, await self.start(), writing=True)
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[SqliteConnection]:
        conn = SqliteConnection(self, None, writing=False)
        try:
            yield conn
        finally:
            await conn.rollback()

    async def dedicated(self) -> Connection:
        return SqliteConnection(self, None, writing=False)

    async def close_dedicated(self, conn: Connection) -> None:
        await conn.rollback()

    async def has_table(self, name: str) -> bool:
        found = self.reader().execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return found.fetchone() is not None

    async def dispose(self) -> None:
        self._disposing = True  # no checkpoint is asked for from here on
        try:
            checkpoint = self._checkpoint
            if checkpoint is not None and not checkpoint.done():
                await checkpoint
        finally:
            for raw in (self._reader, self._writer, self._checkpointer):
                if raw is not None:
                    raw.close()
            self._reader = self._writer = self._checkpointer = None
            self._disposing = False


# ---------------------------------------------------------------------------- PostgreSQL


def _json_decoder(value: bytes) -> Any:
    return json.loads(value.decode())


def _jsonb_encoder(value: str) -> bytes:
    return b"\x01" + value.encode()


def _jsonb_decoder(value: bytes) -> Any:
    return json.loads(value[1:].decode())


async def _pg_setup(conn: Any) -> None:
    """JSON as SQLAlchemy's asyncpg dialect sets it up (its JSON types expect this)."""
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=_json_decoder, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=_jsonb_encoder,
        decoder=_jsonb_decoder,
        schema="pg_catalog",
        format="binary",
    )


async def _pg_reset(conn: Any) -> None:
    """A pooled connection goes back to the pool as it is. asyncpg has already rolled back a
    transaction left open; nothing here leaves session state on a pooled connection (no SET,
    LISTEN, cursor or session advisory lock: the relay's lock has a dedicated connection), so
    asyncpg's default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``)
    would undo nothing and costs a round trip on every release."""


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PostgresConnection(Connection):
    """``whole``: a transaction of ``db.begin()``. Its BEGIN waits for its first statement
    that is not a plain read, so a unit of work that only reads costs no BEGIN and COMMIT,
    and one whose only write is its last statement sends it alone (``execute_last``). Under
    READ COMMITTED a read sees the same outside the transaction as in it, before any write."""

    def __init__(self, db: PostgresDatabase, raw: Any, whole: bool = False):
        super().__init__(db)
        self.raw = raw
        self._tx: Any = None  # the transaction, once one has started
        self._alone = False  # the statement under way is sent alone (``execute_last``)
        self._whole = whole

    @property
    def closed(self) -> bool:
        return bool(self.raw.is_closed())

    async def execute_last(
        self, statement: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Result:
        # Alone only if it is one statement (``_insert_returning`` splits some row counts).
        rows = len(params) if isinstance(params, list | tuple) else 1
        if self._tx is not None or rows & (rows - 1) or rows > MULTIROW:
            return await self.execute(statement, params)
        self._alone = True
        try:
            result = await self.execute(statement, params)
        finally:
            self._alone = False
        self.db.committed()
        return result

    async def _run(self, plan: _Plan, sets: Sequence[Params], many: bool) -> Result:
        if self._tx is None and not self._alone:
            if not (plan.plain_read if self._whole else plan.reads):
                await self._begin()
        raw: list[Any] = []
        rowcount = 0
        description: Sequence[str] = ()
        if many and not plan.expanding and plan.row is None:
            await self.raw.executemany(plan.sql, [plan.arguments(p)[1] for p in sets])
            return Result([], -1)
        for params in sets:
            sql, args = plan.arguments(params)
            if plan.returns_rows:
                records = await self.raw.fetch(sql, *args)
                if records:
                    description = list(records[0].keys())
                raw.extend(records)
                rowcount += len(records)
            else:
                rowcount += _rowcount(await self.raw.execute(sql, *args))
        return Result(plan.rows(raw, lambda: description), rowcount)

    async def _statement(self, sql: str) -> None:
        if self._tx is None and self._whole:  # a savepoint: the transaction begins
            await self._begin()
        await self.raw.execute(sql)

    async def _begin(self) -> None:
        tx = self.raw.transaction()
        await tx.start()
        self._tx = tx

    async def commit(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            await tx.commit()
            self.db.committed()

    async def rollback(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            await tx.rollback()


class PostgresDatabase(Database):
    name = "postgresql"
    multirow = True  # a round trip per statement: fewer, bigger statements

    def __init__(self, url: URL, dialect: Dialect, pool_size: int = 20):
        import asyncpg  # type: ignore[import-untyped]

        super().__init__(url, dialect)
        self.driver_errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        self._asyncpg = asyncpg
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool_size = pool_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    def wrap(self, sql: str, params: Any, error: BaseException) -> sa_exc.DBAPIError:
        integrity = isinstance(error, self._asyncpg.IntegrityConstraintViolationError)
        kind = sa_exc.IntegrityError if integrity else sa_exc.OperationalError
        return kind(sql, params, cast(Exception, error))

    async def pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._pool_size,
                        statement_cache_size=1024,
                        init=_pg_setup,
                        reset=_pg_reset,
                    )
        return self._pool

    async def _acquire(self) -> Any:
        try:
            return await (await self.pool()).acquire()
        except self.driver_errors as error:
            raise self.wrap("connect", (), error) from error

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresConnection]:
        raw = await self._acquire()
        try:
            conn = PostgresConnection(self, raw, whole=True)
            try:
                yield conn
            except BaseException:
                await _quietly(conn.rollback())
                raise
            try:
                await conn.commit()
            except self.driver_errors as error:
                raise self.wrap("COMMIT", (), error) from error
        finally:
            await (await self.pool()).release(raw)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[PostgresConnection]:
        raw = await self._acquire()
        conn = PostgresConnection(self, raw)
        try:
            yield conn
        finally:
            try:
                await _quietly(conn.rollback())
            finally:
                await (await self.pool()).release(raw)

    async def dedicated(self) -> Connection:
        try:
            raw = await self._asyncpg.connect(self._dsn, statement_cache_size=0)
        except self.driver_errors as error:
            raise self.wrap("connect", (), error) from error
        return PostgresConnection(self, raw)

    async def close_dedicated(self, conn: Connection) -> None:
        raw = cast(PostgresConnection, conn).raw
        raw.terminate()  # never waits: the connection may be gone already

    async def has_table(self, name: str) -> bool:
        async with self.connect() as conn:
            found = await conn.raw.fetchval("SELECT to_regclass($1)", name)
        return found is not None

    async def dispose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await within(10, pool.close())
            except (TimeoutError, Exception):
                pool.terminate()


# SQLSTATE classes that say the connection, not the statement, failed: 08 connection
# exception, 57P operator intervention (pg_terminate_backend, a shutdown), 53300 too many
# connections.
_LOST_STATES = ("08", "57P", "53300")


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (SQLAlchemy's or the driver's) says the database could not be
    reached or the connection broke, rather than that the statement was wrong: the same work
    may succeed when tried again. The pool already drops a connection the server ended
    (asyncpg replaces a closed connection when it is released or handed out again)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_LOST_STATES):
            return True
        name = type(current).__name__
        if name == "InterfaceError" and "closed" in str(current):  # asyncpg's, used after loss
            return True
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True  # another process held the write lock longer than BUSY_WAIT
        if isinstance(current, OSError):  # refused, reset, timed out (TimeoutError is one)
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:  # the connection is gone; asyncpg's pool replaces it
        pass
