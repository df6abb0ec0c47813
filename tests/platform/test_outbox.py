"""The transactional outbox: a committed event is published, in order, even across crashes.

- a ledger killed (SIGKILL) right after its commit, or right after the broker confirmed but
  before the rows were marked sent: after a restart each consumer has each event once;
- with the broker unreachable, events wait in the outbox and go out when it returns;
- two relays on one PostgreSQL database never publish at the same time, and the standby takes
  over when the leader's lock connection goes away;
- the events of one aggregate arrive in commit order.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mercato.platform.bus.port import EventBus
from mercato.platform.envelope import Envelope
from mercato.platform.outbox import OutboxRelay
from mercato.platform.runtime.system import System
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database, PostgresConnection
from mercato.platform.unit_of_work import transaction
from tests.conftest import eventually
from tests.demo import ledger, tally
from tests.demo.probe import (
    ROOT,
    arrivals,
    broker_bus,
    count_of,
    drop_namespace,
    inbox_count,
    service_engine,
    unsent,
)
from tests.support import test_settings as make_settings

CONSUMERS = ("tally", "mirror")


async def crash_ledger(data_dir: Path, template: str | None, when: str, *args: str) -> int:
    """Run tests/demo/crash.py in a child process; return its exit code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.demo.crash",
        str(data_dir),
        template or "-",
        when,
        *args,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -9, err.decode()
    return proc.returncode


async def each_consumer_has_once(consumers: System, ledger_system: System, ids: list[str]) -> None:
    """Every consumer counted every event of ``acc-1`` exactly once, in order.

    Once the outbox is empty (every copy the restarted relay sent is confirmed), one more
    entry goes out behind them; a consumer's queue is FIFO, so when the consumer has counted
    it, any duplicate of the earlier ones has been through its inbox already.
    """
    ledger_ctx = ledger_system.hosts["ledger"].ctx
    assert ledger_ctx is not None
    await eventually(lambda: _none_unsent(ledger_ctx.db), timeout=20)
    async with ledger_ctx.transaction() as uow:
        await ledger.record_entry(uow, "acc-1", Decimal("1.00"))
    for name in CONSUMERS:
        ctx = consumers.hosts[name].ctx
        assert ctx is not None
        await eventually(lambda ctx=ctx: _count_is(ctx.db, "acc-1", len(ids) + 1), timeout=20)
        assert [n for _, n in await arrivals(ctx.db, "acc-1")] == list(range(1, len(ids) + 2))
        assert await count_of(ctx.db, "acc-1") == len(ids) + 1
        for event_id in ids:
            assert await inbox_count(ctx.db, name, event_id) == 1


async def _count_is(engine: Database, account: str, expected: int) -> bool:
    return await count_of(engine, account) >= expected


async def _none_unsent(engine: Database) -> bool:
    return not await unsent(engine)


async def waiting_in_outbox(template: str | None, data_dir: Path) -> list[str]:
    engine = await service_engine(template, "ledger", data_dir)
    try:
        return await unsent(engine)
    finally:
        await engine.dispose()


async def test_a_ledger_killed_after_commit_loses_nothing_sqlite(tmp_path: Path) -> None:
    await crash_ledger(tmp_path, None, "after-commit", "acc-1", "3")
    waiting = await waiting_in_outbox(None, tmp_path)
    assert len(waiting) == 3, "committed, never published"
    system = System([ledger.service, tally.service, tally.mirror], make_settings(tmp_path))
    async with system.running():
        await each_consumer_has_once(system, system, waiting)


@pytest.mark.parametrize("when", ["after-commit", "after-publish"])
async def test_a_ledger_killed_mid_way_loses_nothing_postgres_rabbitmq(
    when: str, postgres_template: str, rabbitmq_url: str, tmp_path: Path
) -> None:
    """``after-publish``: the broker had the events when the ledger died, so the restarted
    relay sends them a second time; the consumers' inboxes drop the copies."""
    namespace = f"mtest{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, database_url=postgres_template, broker_url=rabbitmq_url)
    consumers = System(
        [tally.service, tally.mirror], settings, bus=broker_bus(rabbitmq_url, namespace)
    )
    try:
        async with consumers.running():
            await crash_ledger(
                tmp_path, postgres_template, when, "acc-1", "3", rabbitmq_url, namespace
            )
            waiting = await waiting_in_outbox(postgres_template, tmp_path)
            assert len(waiting) == 3, "committed (and maybe published), never marked sent"
            restarted = System([ledger.service], settings, bus=broker_bus(rabbitmq_url, namespace))
            async with restarted.running():
                await each_consumer_has_once(consumers, restarted, waiting)
    finally:
        await drop_namespace(rabbitmq_url, namespace)


# -- two relays on PostgreSQL ---------------------------------------------------------------
class PublishLog:
    """What every relay's bus published, and how many publishes were in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.published: list[tuple[str, Envelope]] = []

    def publisher_of(self, event_id: str) -> list[str]:
        return [who for who, e in self.published if e.id == event_id]


class SlowBus:
    """A relay's bus (one per relay, as in separate processes) that takes its time."""

    def __init__(self, name: str, log: PublishLog, delay: float = 0.02):
        self.name, self.log, self.delay = name, log, delay

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        self.log.in_flight += 1
        self.log.most_in_flight = max(self.log.most_in_flight, self.log.in_flight)
        try:
            await asyncio.sleep(self.delay)
            self.log.published.extend((self.name, e) for _, e in batch)
        finally:
            self.log.in_flight -= 1
        return [True] * len(batch)


async def record_entries(engine: Database, accounts: Sequence[str], each: int) -> list[str]:
    """Each account's entries one transaction after another, accounts side by side."""
    ids: list[str] = []

    async def write(account: str) -> None:
        for _ in range(each):
            async with transaction(engine, "ledger") as uow:
                ids.append((await ledger.record_entry(uow, account, Decimal("1.00"))).id)

    await asyncio.gather(*(write(a) for a in accounts))
    return ids


@pytest.fixture
async def pg_ledger(postgres_template: str, tmp_path: Path) -> AsyncIterator[Database]:
    engine = await service_engine(postgres_template, "ledger", tmp_path)
    yield engine
    await engine.dispose()


async def test_two_relays_on_postgres_never_publish_at_once_and_the_standby_takes_over(
    pg_ledger: Database, postgres_template: str, tmp_path: Path
) -> None:
    log = PublishLog()
    url = service_url(postgres_template, "ledger", tmp_path)
    engines = [open_database(url), open_database(url)]
    relays = {
        name: OutboxRelay(
            e, cast(EventBus, SlowBus(name, log)), "ledger", batch_size=4, poll_interval=0.02
        )
        for name, e in zip(("one", "two"), engines, strict=True)
    }
    tasks = {name: asyncio.create_task(r.run()) for name, r in relays.items()}
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        first = await record_entries(pg_ledger, ["acc-1", "acc-2", "acc-3"], 8)
        await eventually(lambda: _none_unsent(pg_ledger))
        assert log.most_in_flight == 1, "only the lock holder publishes"
        assert all(len(log.publisher_of(i)) == 1 for i in first), "each row once"
        assert_in_commit_order(log)

        # The leader's connection dies (its lock with it); it must notice and stand by.
        leader_pid = await lock_holder(admin, relays["one"])
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": leader_pid})
        await eventually(lambda: _new_holder(admin, relays["one"], leader_pid))
        second = await record_entries(pg_ledger, ["acc-1", "acc-4"], 4)
        await eventually(lambda: _none_unsent(pg_ledger))
        assert log.most_in_flight == 1
        assert all(len(log.publisher_of(i)) == 1 for i in second)

        # The current leader dies outright: the other one carries on alone.
        holder_pid = await lock_holder(admin, relays["one"])
        leader = next(n for n, r in relays.items() if r._lock_conn is not None)
        standby = next(n for n in relays if n != leader)
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder_pid})
        tasks[leader].cancel()
        third = await record_entries(pg_ledger, ["acc-2"], 4)
        await eventually(lambda: _none_unsent(pg_ledger))
        assert all(log.publisher_of(i) == [standby] for i in third), (leader, standby)
        assert log.most_in_flight == 1
        assert_in_commit_order(log)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for e in (*engines, admin):
            await e.dispose()


async def test_the_leader_proves_its_lock_once_per_poll_interval_and_sees_a_closed_one_at_once(
    pg_ledger: Database, postgres_template: str, tmp_path: Path
) -> None:
    """Under load a relay runs a batch after another; proving the lock before each was a round
    trip per batch. The proof is made once per poll interval, and a lock connection the server
    ended is noticed with none."""
    relay = OutboxRelay(
        pg_ledger, cast(EventBus, SlowBus("one", PublishLog())), "ledger", poll_interval=60
    )
    admin = create_async_engine(
        service_url(postgres_template, "ledger", tmp_path), isolation_level="AUTOCOMMIT"
    )
    try:
        assert await relay._is_leader()
        lock_conn = cast(PostgresConnection, relay._lock_conn)
        sent: list[str] = []
        lock_conn.raw.add_query_logger(lambda logged: sent.append(logged.query))
        for _ in range(20):  # twenty batches within the interval
            assert await relay._is_leader()
        await asyncio.sleep(0)
        assert sent == []
        relay._lock_proved -= 60  # the interval has passed
        assert await relay._is_leader()
        assert await relay._is_leader()
        await asyncio.sleep(0)  # asyncpg hands the query to its loggers with call_soon
        assert sent == ["SELECT 1"]

        holder = await lock_holder(admin, relay)
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder})
        await eventually(lambda: lock_conn.closed)
        with pytest.raises(ConnectionError):
            await relay._is_leader()
        await asyncio.sleep(0)
        assert sent == ["SELECT 1"]
    finally:
        await relay._drop_lock()
        await admin.dispose()


def assert_in_commit_order(log: PublishLog) -> None:
    """Per account, entries went out as they were committed: n = 1, 2, 3, …"""
    by_account: dict[str, list[int]] = {}
    for _, event in log.published:
        by_account.setdefault(event.data["account"], []).append(event.data["n"])
    for account, ns in by_account.items():
        assert ns == list(range(1, len(ns) + 1)), (account, ns)


async def lock_holder(admin: AsyncEngine, relay: OutboxRelay) -> int:
    pid = await eventually(lambda: _holder(admin, relay))
    return int(pid)


async def _holder(admin: AsyncEngine, relay: OutboxRelay) -> int | None:
    """The backend holding the relay's advisory lock (a bigint key: classid 0, objid = key)."""
    async with admin.connect() as conn:
        pid = await conn.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objid = :k AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"k": relay._lock_key},
        )
    return int(pid) if pid is not None else None


async def _new_holder(admin: AsyncEngine, relay: OutboxRelay, old: int) -> bool:
    pid = await _holder(admin, relay)
    return pid is not None and pid != old


@pytest.fixture(params=["sqlite-memory", "postgres-rabbitmq"])
def backend(request: pytest.FixtureRequest) -> tuple[str | None, str]:
    """(database template, broker URL) of one way to run."""
    if request.param == "sqlite-memory":
        return None, "memory://"
    return request.getfixturevalue("postgres_template"), request.getfixturevalue("rabbitmq_url")


async def test_events_of_one_aggregate_arrive_in_commit_order(
    backend: tuple[str | None, str], tmp_path: Path
) -> None:
    """Four accounts written side by side, each one entry after another; every consumer sees
    each account's entries in the order they were committed."""
    template, url = backend
    settings = make_settings(tmp_path, database_url=template, broker_url=url)
    namespace = f"mtest{uuid.uuid4().hex[:8]}"
    bus = broker_bus(url, namespace) if template else None
    system = System([ledger.service, tally.service, tally.mirror], settings, bus=bus)
    try:
        await _check_commit_order(system)
    finally:
        if bus is not None:
            await drop_namespace(url, namespace)


async def _check_commit_order(system: System) -> None:
    async with system.running():
        ctx = system.hosts["ledger"].ctx
        assert ctx is not None
        accounts = [f"acc-{i}" for i in range(4)]
        await record_entries(ctx.db, accounts, 8)
        for name in CONSUMERS:
            consumer_ctx = system.hosts[name].ctx
            assert consumer_ctx is not None
            for account in accounts:
                engine = consumer_ctx.db
                await eventually(lambda e=engine, a=account: _count_is(e, a, 8))
                assert [n for _, n in await arrivals(engine, account)] == list(range(1, 9))


# -- the broker goes away -------------------------------------------------------------------
class CuttableProxy:
    """A TCP proxy between the bus and RabbitMQ that can be cut: its connections closed and
    its port closed (so reconnects are refused), and later opened again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)

    async def close(self) -> None:
        if self._server is not None and self._server.is_serving():
            await self.cut()
        for task in list(self._pipes):
            task.cancel()


async def test_events_wait_in_the_outbox_while_the_broker_is_unreachable(
    postgres_template: str, rabbitmq_url: str, tmp_path: Path
) -> None:
    target = urlparse(rabbitmq_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.open()
    credentials = target.netloc.rpartition("@")[0]
    host = f"127.0.0.1:{proxy.port}"
    via_proxy = target._replace(
        netloc=f"{credentials}@{host}" if credentials else host,
        query="reconnect_interval=0.5",  # aio-pika's robust connection retries every 0.5 s
    )
    namespace = f"mtest{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path, database_url=postgres_template, broker_url=via_proxy.geturl()
    )
    system = System(
        [ledger.service, tally.service],
        settings,
        bus=broker_bus(via_proxy.geturl(), namespace),
    )
    try:
        async with system.running():
            ledger_ctx, tally_ctx = system.hosts["ledger"].ctx, system.hosts["tally"].ctx
            assert ledger_ctx is not None and tally_ctx is not None
            await record_entries(ledger_ctx.db, ["acc-1"], 1)
            await eventually(lambda: _count_is(tally_ctx.db, "acc-1", 1))

            await proxy.cut()
            try:
                await record_entries(ledger_ctx.db, ["acc-1"], 2)  # commits go on
                await asyncio.sleep(1.5)
                assert len(await unsent(ledger_ctx.db)) == 2, "they wait in the outbox"
                assert await count_of(tally_ctx.db, "acc-1") == 1
                assert "unavailable" in (await system.readiness())["ledger"]
            finally:
                await proxy.open()  # even on failure: the system stops with its broker back
            await eventually(lambda: _count_is(tally_ctx.db, "acc-1", 3), timeout=30)
            await eventually(lambda: _none_unsent(ledger_ctx.db))
            assert [n for _, n in await arrivals(tally_ctx.db, "acc-1")] == [1, 2, 3]
            assert await system.readiness() == {"ledger": "ok", "tally": "ok"}
    finally:
        await proxy.close()
        await drop_namespace(rabbitmq_url, namespace)


# -- polling --------------------------------------------------------------------------------
class Recording:
    """A bus that confirms everything and remembers when each event went out."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        for _, envelope in batch:
            self.sent[envelope.id] = asyncio.get_running_loop().time()
        return [True] * len(batch)


async def test_an_idle_relay_polls_less_yet_a_commit_here_goes_out_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mercato.platform.outbox.IDLE_POLL", 0.8)
    engine = await service_engine(None, "ledger", tmp_path)
    bus = Recording()
    relay = OutboxRelay(engine, cast(EventBus, bus), "ledger", poll_interval=0.05)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(1.5)  # nothing to send: the polls have spread out to 0.8 s
        async with transaction(engine, "ledger", on_events=relay.committed) as uow:
            here = (await ledger.record_entry(uow, "acc-1", Decimal("1.00"))).id
        committed = asyncio.get_running_loop().time()
        await eventually(lambda: here in bus.sent, timeout=5)
        assert bus.sent[here] - committed < 0.3, "woken, not polled"

        # Written elsewhere (no wake here): found by a poll, at most IDLE_POLL later.
        await asyncio.sleep(1.0)
        async with transaction(engine, "ledger") as uow:
            elsewhere = (await ledger.record_entry(uow, "acc-1", Decimal("1.00"))).id
        await eventually(lambda: elsewhere in bus.sent, timeout=3)
    finally:
        relay.stop()
        await running
        await engine.dispose()


async def test_confirmed_rows_of_several_batches_are_marked_sent_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mercato.platform.outbox.MARK_AFTER", 1.5)
    engine = await service_engine(None, "ledger", tmp_path)
    published: list[str] = []

    class Counting:
        async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
            published.extend(envelope.id for _, envelope in batch)
            return [True] * len(batch)

    relay = OutboxRelay(engine, cast(EventBus, Counting()), "ledger", poll_interval=0.05)
    marks: list[int] = []
    mark = relay.mark

    async def counted() -> None:
        if relay._unmarked:
            marks.append(len(relay._unmarked))
        await mark()

    monkeypatch.setattr(relay, "mark", counted)
    running = asyncio.create_task(relay.run())
    try:
        for n in range(1, 4):  # three batches: each goes out at once
            async with transaction(engine, "ledger", on_events=relay.committed) as uow:
                await ledger.record_entry(uow, "acc-1", Decimal("1.00"))
            await eventually(lambda n=n: len(published) == n, timeout=2)
        assert len(await unsent(engine)) == 3 and marks == []  # confirmed, not marked yet
        await eventually(lambda: marks == [3], timeout=5)  # one transaction for the three
        assert await unsent(engine) == []
        async with transaction(engine, "ledger", on_events=relay.committed) as uow:
            await ledger.record_entry(uow, "acc-1", Decimal("1.00"))
        await eventually(lambda: len(published) == 4, timeout=2)
    finally:
        relay.stop()
        await running
    assert marks == [3, 1] and await unsent(engine) == []  # stopping marks what is confirmed
    assert len(set(published)) == len(published) == 4  # nothing published twice meanwhile
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


async def test_rows_committed_here_go_out_without_a_read_and_a_gap_means_a_read(
    template: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows a commit of this process hands over are published without reading them back
    while they follow on from the last row published; a row before them that was not handed
    over (written elsewhere), or a PostgreSQL sequence value a rollback used up, means the
    table is read, and the order stays the outbox's."""
    monkeypatch.setattr("mercato.platform.outbox.IDLE_POLL", 60)  # no poll, no mark timer:
    monkeypatch.setattr("mercato.platform.outbox.MARK_AFTER", 60)  # every read is counted
    engine = await service_engine(template, "ledger", tmp_path)
    bus = Recording()
    relay = OutboxRelay(engine, cast(EventBus, bus), "ledger", poll_interval=60)
    reads: list[int] = []
    read = relay._read

    async def counted() -> tuple[list[int], list[tuple[str, Envelope]]]:
        reads.append(1)
        return await read()

    monkeypatch.setattr(relay, "_read", counted)

    async def commit(*, handed: bool = True, roll_back: bool = False) -> str:
        try:
            async with transaction(
                engine, "ledger", on_events=relay.committed if handed else None
            ) as uow:
                event = await ledger.record_entry(uow, "acc-1", Decimal("1.00"))
                if roll_back:
                    await uow.write_outbox()  # its row written (a seq taken), then undone
                    raise LookupError("rolled back")
        except LookupError:
            pass
        return event.id

    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: len(reads) == 1, timeout=2)  # the first poll: nothing
        first = await commit()  # where the outbox ends is not known yet: read
        await eventually(lambda: first in bus.sent, timeout=2)
        assert len(reads) == 2
        handed = [await commit() for _ in range(3)]
        await eventually(lambda: handed[-1] in bus.sent, timeout=2)
        assert len(reads) == 2, "handed over, not read back"

        elsewhere = await commit(handed=False)
        after = await commit()
        await eventually(lambda: after in bus.sent, timeout=2)
        assert len(reads) == 3, "a row before it was not handed over: read"

        lost = await commit(roll_back=True)
        last = await commit()
        await eventually(lambda: last in bus.sent, timeout=2)
        # PostgreSQL's sequence skips the value the rollback took; SQLite's does not.
        assert len(reads) == (3 if template is None else 4)
    finally:
        relay.stop()
        await running
    assert list(bus.sent) == [first, *handed, elsewhere, after, last]
    assert lost not in bus.sent and await unsent(engine) == []
    await engine.dispose()


class Held(Recording):
    """Records, and while ``held`` is set keeps a publish waiting until ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.release = asyncio.Event()

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        confirmed = await super().publish(batch)
        if self.held:
            await self.release.wait()
        return confirmed


async def test_a_row_committed_after_a_read_that_went_past_it_is_still_published(
    postgres_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL two transactions of one process can commit out of seq order: a read that
    ran between the two commits found the later row and not the earlier one. The earlier row,
    handed over afterwards, is below where the read ended yet was never published: it means a
    read, even when rows that follow on come with it (or it would wait for the next poll
    while commits keep coming)."""
    monkeypatch.setattr("mercato.platform.outbox.IDLE_POLL", 60)  # no poll, no mark timer
    monkeypatch.setattr("mercato.platform.outbox.MARK_AFTER", 60)
    engine = await service_engine(postgres_template, "ledger", tmp_path)
    bus = Held()
    relay = OutboxRelay(engine, cast(EventBus, bus), "ledger", poll_interval=60)
    running = asyncio.create_task(relay.run())

    async def commit(account: str) -> str:
        async with transaction(engine, "ledger", on_events=relay.committed) as uow:
            return (await ledger.record_entry(uow, account, Decimal("1.00"))).id

    try:
        first = await commit("acc-1")
        await eventually(lambda: first in bus.sent, timeout=2)  # where the outbox ends: known
        async with transaction(engine, "ledger", on_events=relay.committed) as early:
            slow = (await ledger.record_entry(early, "acc-2", Decimal("1.00"))).id
            await early.write_outbox()  # its seq taken now, its commit later
            early.events = []
            bus.held = True
            fast = await commit("acc-3")  # the gap before it: read, published, held
            await eventually(lambda: fast in bus.sent, timeout=2)
        last = await commit("acc-1")  # handed over with the early one, while held
        bus.held = False
        bus.release.set()
        await eventually(lambda: slow in bus.sent and last in bus.sent, timeout=2)
    finally:
        relay.stop()
        await running
    assert list(bus.sent) == [first, fast, slow, last]
    assert await unsent(engine) == []
    await engine.dispose()


async def test_rows_handed_over_past_the_limit_are_read_instead_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the broker keeps a publish waiting, commits keep handing rows over; past
    ``HANDED_MAX`` the relay lets go of them and reads the table: all of them go out, once,
    in the outbox's order."""
    monkeypatch.setattr("mercato.platform.outbox.HANDED_MAX", 3)
    monkeypatch.setattr("mercato.platform.outbox.IDLE_POLL", 60)
    engine = await service_engine(None, "ledger", tmp_path)
    bus = Held()
    relay = OutboxRelay(engine, cast(EventBus, bus), "ledger", poll_interval=60)
    running = asyncio.create_task(relay.run())

    async def commit() -> str:
        async with transaction(engine, "ledger", on_events=relay.committed) as uow:
            return (await ledger.record_entry(uow, "acc-1", Decimal("1.00"))).id

    try:
        first = await commit()
        await eventually(lambda: first in bus.sent, timeout=2)
        bus.held = True
        second = await commit()  # published, held
        await eventually(lambda: second in bus.sent, timeout=2)
        later = [await commit() for _ in range(6)]  # more than HANDED_MAX meanwhile
        assert len(relay._handed) <= 3
        bus.held = False
        bus.release.set()
        await eventually(lambda: all(e in bus.sent for e in later), timeout=3)
    finally:
        relay.stop()
        await running
    assert list(bus.sent) == [first, second, *later]
    assert await unsent(engine) == []
    await engine.dispose()


class NackOnce(Recording):
    """Confirms every message but the second of its first batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        await super().publish(batch)
        self.batches.append([envelope.data["n"] for _, envelope in batch])
        confirmed = [True] * len(batch)
        if len(self.batches) == 1:
            confirmed[1] = False
        return confirmed


async def test_rows_after_an_unconfirmed_one_stay_unsent_and_go_out_again_in_order(
    tmp_path: Path,
) -> None:
    """Marking a later event of an aggregate sent when an earlier one was not confirmed would
    leave the earlier one to go out after it for good; only the confirmed prefix is marked."""
    engine = await service_engine(None, "ledger", tmp_path)
    bus = NackOnce()
    relay = OutboxRelay(engine, cast(EventBus, bus), "ledger")
    try:
        ids = await record_entries(engine, ["acc-1"], 3)
        with pytest.raises(RuntimeError, match="confirmed 2 of 3"):
            await relay.relay_once()
        assert await unsent(engine) == ids[1:], "the first is sent; the rest go out again"
        assert await relay.relay_once() == 2
        await relay.mark()
        assert bus.batches == [[1, 2, 3], [2, 3]]
        assert await unsent(engine) == []
    finally:
        await engine.dispose()


async def test_a_relay_whose_lock_connection_was_ended_publishes_no_further_batch(
    pg_ledger: Database, postgres_template: str, tmp_path: Path
) -> None:
    """A leader whose lock connection the server ended (another relay may hold the lock now)
    stops before publishing its next batch, without waiting for its next proof of the lock."""
    bus = Recording()
    relay = OutboxRelay(pg_ledger, cast(EventBus, bus), "ledger", poll_interval=60)
    admin = create_async_engine(
        service_url(postgres_template, "ledger", tmp_path), isolation_level="AUTOCOMMIT"
    )
    try:
        assert await relay._is_leader()
        first = await record_entries(pg_ledger, ["acc-1"], 1)
        assert await relay.relay_once() == 1
        lock_conn = relay._lock_conn
        assert lock_conn is not None
        async with admin.connect() as conn:
            await conn.execute(
                text("SELECT pg_terminate_backend(:p)"), {"p": await lock_holder(admin, relay)}
            )
        await eventually(lambda: lock_conn.closed)
        await record_entries(pg_ledger, ["acc-1"], 1)
        with pytest.raises(ConnectionError, match="lock's connection is closed"):
            await relay.relay_once()
        assert list(bus.sent) == first, "nothing published after the lock was lost"
    finally:
        await relay._drop_lock()
        await admin.dispose()
