"""The demo pair embedded: one System, the in-process bus, SQLite files in a data directory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
import structlog
from sqlalchemy import select

from mercato.platform.bus.port import ACK, RawMessage, Verdict, pattern_for
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.sql import Database
from tests.conftest import eventually
from tests.demo import ledger, tally
from tests.demo.ledger import call_record
from tests.demo.probe import (
    arrivals,
    broker_bus,
    count_of,
    drop_namespace,
    inbox_count,
    service_engine,
    unsent,
)
from tests.support import running
from tests.support import test_settings as make_settings

T = TypeVar("T")


async def test_the_pair_runs_embedded_and_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running([ledger.service, tally.service], settings) as (system, http):
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "services": {"ledger": "ok", "tally": "ok"}}

        async with grpc.aio.insecure_channel(system.grpc_targets["ledger"]) as channel:
            answers = [await call_record(channel, "acc-1", "2.50") for _ in range(3)]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call_record(channel, "acc-1", "two euros")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [a["n"] for a in answers] == [1, 2, 3]
        engine = tally_engine(system)
        await eventually(lambda: _counted(engine, "acc-1", 3))
        assert await _total(system, "acc-1") == Decimal("7.5")

    assert (tmp_path / "ledger.db").is_file() and (tmp_path / "tally.db").is_file()
    async with running([ledger.service, tally.service], settings) as (system, _):
        await asyncio.sleep(0.3)  # a relay round: nothing is sent, or counted, again
        assert await count_of(tally_engine(system), "acc-1") == 3
        assert len(await arrivals(tally_engine(system), "acc-1")) == 3


async def test_stopping_lets_the_handler_in_hand_commit(tmp_path: Path) -> None:
    """Shutdown drains: an event whose handler is mid-way when the stop comes is counted."""
    system = System([ledger.service, tally.service], make_settings(tmp_path))
    await stopped_mid_handler(system, "acc-slow", pause=0.5)
    # Nothing runs now: what the tally's database holds was committed before the stop ended.
    assert await stored(tmp_path, "tally", lambda db: count_of(db, "acc-slow")) == 1
    assert await stored(tmp_path, "ledger", unsent) == [], (
        "the drained handler's event was confirmed"
    )


@pytest.fixture(params=["memory", "rabbitmq", "nats"])
def broker(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_a_handler_that_never_returns_is_cancelled_at_the_shutdown_timeout(
    tmp_path: Path, broker: str
) -> None:
    """Past ``shutdown_timeout`` the batch in hand is cancelled: its transaction rolls back
    (nothing counted, no inbox row), the stop completes, and the event is delivered again:
    the broker still has it (the in-process bus never confirmed it: it stays in the outbox)."""
    settings = make_settings(tmp_path, shutdown_timeout=0.5)
    namespace = f"mhung{uuid.uuid4().hex[:8]}"
    bus = None if broker == "memory://" else broker_bus(broker, namespace)
    system = System([ledger.service, tally.service], settings, bus=bus)
    try:
        # The handler pauses 60 s: the stop used to wait for it.
        hung, logs = await stopped_mid_handler(system, "acc-hung", pause=60)
        assert any(e["event"].startswith("handlers still running") for e in logs), logs
        assert await stored(tmp_path, "tally", lambda db: count_of(db, "acc-hung")) == 0
        counted = await stored(tmp_path, "tally", lambda db: inbox_count(db, "tally", hung.id))
        assert counted == 0, "rolled back"
        if bus is None:
            assert await stored(tmp_path, "ledger", unsent) == [hung.id], "goes out again"
        else:
            assert await _redelivered(broker, namespace, settings.max_attempts + 3) == [hung.id]
    finally:
        if bus is not None:
            await drop_namespace(broker, namespace)


async def stopped_mid_handler(
    system: System, account: str, pause: float
) -> tuple[Envelope, list[dict[str, Any]]]:
    """Start ``system``, record an entry whose tally handler pauses ``pause`` seconds, and
    stop the system while the handler is mid-way; the entry's event and the logs."""
    with structlog.testing.capture_logs() as logs:
        await system.start()
        try:
            ctx = system.hosts["ledger"].ctx
            assert ctx is not None
            async with ctx.transaction() as uow:
                entry = await ledger.record_entry(uow, account, Decimal("1"), pause=pause)
            await eventually(lambda: any(e["event"] == "tally pausing" for e in logs))
        finally:
            async with asyncio.timeout(30):
                await system.stop()
    return entry, logs


async def stored(data_dir: Path, service: str, read: Callable[[Database], Awaitable[T]]) -> T:
    """What ``read`` finds in a stopped service's database."""
    engine = await service_engine(None, service, data_dir)
    try:
        return await read(engine)
    finally:
        await engine.dispose()


async def _redelivered(url: str, namespace: str, max_deliveries: int) -> list[str]:
    """The ids of what the tally's queue still holds (taken and acknowledged)."""
    bus = broker_bus(url, namespace)
    await bus.connect()
    got: list[str] = []

    async def take(batch: Sequence[RawMessage]) -> list[Verdict]:
        got.extend(str(m.headers[m.prefix + "id"]) for m in batch)
        return [ACK] * len(batch)

    try:
        subscription = await bus.subscribe(
            "tally", [pattern_for("EntryRecorded")], take, max_deliveries=max_deliveries
        )
        await eventually(lambda: got, timeout=20)
        await subscription.stop()
    finally:
        await bus.close()
    return got


def tally_engine(system: System):  # type: ignore[no-untyped-def]
    ctx = system.hosts["tally"].ctx
    assert ctx is not None
    return ctx.db


async def _counted(engine, account: str, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return await count_of(engine, account) == expected


async def _total(system: System, account: str) -> Decimal:
    async with tally_engine(system).connect() as conn:
        value = await conn.scalar(
            select(tally.tallies.c.total).where(tally.tallies.c.account == account)
        )
    return Decimal(value)
