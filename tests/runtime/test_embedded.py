"""The demo pair embedded: one System, the in-process bus, SQLite files in a data directory."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import grpc
import grpc.aio
import pytest
import structlog
from sqlalchemy import select

from mercato.platform.runtime.system import System
from tests.conftest import eventually
from tests.demo import ledger, tally
from tests.demo.ledger import call_record
from tests.demo.probe import arrivals, count_of, service_engine, unsent
from tests.support import running
from tests.support import test_settings as make_settings


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
    with structlog.testing.capture_logs() as logs:
        await system.start()
        try:
            ctx = system.hosts["ledger"].ctx
            assert ctx is not None
            async with ctx.transaction() as uow:
                await ledger.record_entry(uow, "acc-slow", Decimal("1"), pause=0.5)
            await eventually(lambda: any(e["event"] == "tally pausing" for e in logs))
        finally:
            await system.stop()
    # Nothing runs now: what the tally's database holds was committed before the stop ended.
    engine = await service_engine(None, "tally", tmp_path)
    try:
        assert await count_of(engine, "acc-slow") == 1
    finally:
        await engine.dispose()
    engine = await service_engine(None, "ledger", tmp_path)
    try:
        assert await unsent(engine) == [], "the drained handler's event was confirmed"
    finally:
        await engine.dispose()


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
