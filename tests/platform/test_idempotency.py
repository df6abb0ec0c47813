"""Idempotency keys: the same key and request give the first answer; the work runs once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select

from mercato.platform.idempotency import (
    BadIdempotencyKey,
    IdempotencyKeyReused,
    fingerprint,
    run_once,
)
from mercato.platform.storage.database import (
    ensure_database,
    open_database,
    schema_engine,
    service_url,
)
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import UnitOfWork, transaction

orders = Table("orders", MetaData(), Column("id", String(64), primary_key=True))


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


@pytest.fixture
async def engine(template: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    url = service_url(template, "idem", tmp_path)
    await ensure_database(url)
    engine = open_database(url)
    await migrate(engine, None)
    schema = schema_engine(url)
    async with schema.begin() as conn:
        await conn.run_sync(orders.metadata.create_all)
    await schema.dispose()
    yield engine
    await engine.dispose()


def make_order(order_id: str, pause: float = 0.0):  # type: ignore[no-untyped-def]
    async def work(uow: UnitOfWork) -> bytes:
        await uow.conn.execute(orders.insert().values(id=order_id))
        await asyncio.sleep(pause)
        return order_id.encode()

    return work


async def count(engine: Database) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(orders)) or 0)


async def test_the_same_key_and_request_return_the_first_answer(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    first = await run_once(
        tx, scope="s:u1", key="k1", request={"a": 1}, work=make_order("o1"), decode=bytes
    )
    again = await run_once(
        tx, scope="s:u1", key="k1", request={"a": 1}, work=make_order("o2"), decode=bytes
    )
    assert first == again == b"o1"
    assert await count(engine) == 1


async def test_the_same_key_with_another_request_is_refused(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    await run_once(tx, scope="s", key="k", request={"a": 1}, work=make_order("o1"), decode=bytes)
    with pytest.raises(IdempotencyKeyReused):
        await run_once(
            tx, scope="s", key="k", request={"a": 2}, work=make_order("o2"), decode=bytes
        )
    assert await count(engine) == 1


async def test_scopes_keep_users_keys_apart(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    for user, order in (("u1", "o1"), ("u2", "o2")):
        answer = await run_once(
            tx, scope=f"s:{user}", key="k", request={}, work=make_order(order), decode=bytes
        )
        assert answer == order.encode()
    assert await count(engine) == 2


async def test_failed_work_leaves_no_key_behind(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    async def fail(uow: UnitOfWork) -> bytes:
        await uow.conn.execute(orders.insert().values(id="half"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await run_once(tx, scope="s", key="k", request={}, work=fail, decode=bytes)
    answer = await run_once(tx, scope="s", key="k", request={}, work=make_order("o1"), decode=bytes)
    assert answer == b"o1"
    assert await count(engine) == 1


async def test_concurrent_requests_with_one_key_do_the_work_once(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    answers = await asyncio.gather(
        *(
            run_once(
                tx, scope="s", key="k", request={}, work=make_order(f"o{i}", 0.05), decode=bytes
            )
            for i in range(4)
        )
    )
    assert len(set(answers)) == 1
    assert await count(engine) == 1


async def test_a_request_waiting_on_a_claim_that_fails_does_the_work(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    async def fail_late(uow: UnitOfWork) -> bytes:
        await uow.conn.execute(orders.insert().values(id="half"))
        await asyncio.sleep(0.2)
        raise RuntimeError("boom")

    first = asyncio.create_task(
        run_once(tx, scope="s", key="k", request={}, work=fail_late, decode=bytes)
    )
    await asyncio.sleep(0.05)  # the first holds the claim, uncommitted
    second = run_once(tx, scope="s", key="k", request={}, work=make_order("o1"), decode=bytes)
    failed, answer = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(failed, RuntimeError) and answer == b"o1"
    assert await count(engine) == 1


async def test_keys_are_checked(engine: Database) -> None:
    def tx():  # type: ignore[no-untyped-def]
        return transaction(engine, "idem")

    for key in ("", "x" * 201, "naïve", "tab\there"):
        with pytest.raises(BadIdempotencyKey):
            await run_once(tx, scope="s", key=key, request={}, work=make_order("o"), decode=bytes)
    assert await count(engine) == 0


def test_fingerprints_ignore_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
