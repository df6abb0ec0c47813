"""Dead letters: kept with their error, listed and redriven from the CLI, handled once.

The full path runs the demo pair embedded and the operator's real ``mercato dlq`` commands
against its data directory while it runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError

from mercato.platform.bus.port import RawMessage
from mercato.platform.dead_letters import (
    NotOpen,
    Redriver,
    discard,
    list_dead_letters,
    redrive_now,
    request_redrive,
)
from mercato.platform.inbox import InboxConsumer, RetryPolicy
from mercato.platform.runtime.system import System
from mercato.platform.storage.database import (
    ensure_database,
    open_database,
    schema_engine,
    service_url,
)
from mercato.platform.storage.migrate import alembic_config
from mercato.platform.storage.sql import Database
from tests.conftest import eventually
from tests.demo import ledger, tally
from tests.demo.probe import (
    arrivals,
    count_of,
    entry_event,
    freeze,
    inbox_count,
    letters,
    mercato,
    raw,
    service_engine,
    thaw,
)
from tests.support import test_settings as make_settings


async def test_a_dead_letter_redriven_after_the_fix_is_handled_exactly_once(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, max_attempts=2, retry_base_delay=0.01)
    env = {"MERCATO_DATA_DIR": str(tmp_path)}
    async with System([ledger.service, tally.service], settings).running() as system:
        ledger_ctx, tally_ctx = system.hosts["ledger"].ctx, system.hosts["tally"].ctx
        assert ledger_ctx is not None and tally_ctx is not None
        engine = tally_ctx.db
        await freeze(engine, "acc-frozen")
        async with ledger_ctx.transaction() as uow:
            stuck = await record(uow, "acc-frozen")
        async with ledger_ctx.transaction() as uow:
            await record(uow, "acc-ok")

        [letter] = await eventually(lambda: letters(engine))
        assert (letter.event_id, letter.event_type) == (stuck.id, "EntryRecorded")
        assert letter.status == "dead" and letter.attempts == 2
        assert "AccountFrozen: account acc-frozen is frozen" in letter.error
        assert await eventually(lambda: count_of(engine, "acc-ok")) == 1, "the consumer went on"

        code, out = await mercato("dlq", "list", "--service", "tally", env=env)
        assert code == 0, out
        assert letter.id in out and stuck.id in out and "account acc-frozen is frozen" in out
        assert "1 dead letter(s)" in out

        await thaw(engine, "acc-frozen")  # the cause is fixed
        code, out = await mercato("dlq", "redrive", letter.id, "--service", "tally", env=env)
        assert code == 0 and "1 dead letter(s) marked for redrive" in out, out
        await eventually(lambda: _status(engine, "redriven"))
        assert await count_of(engine, "acc-frozen") == 1
        assert await arrivals(engine, "acc-frozen") == [(stuck.data["entryId"], 1)]
        assert await inbox_count(engine, "tally", stuck.id) == 1

        (again, again_out), (listed, list_out) = await asyncio.gather(
            mercato("dlq", "redrive", letter.id, "--service", "tally", env=env),
            mercato("dlq", "list", "--service", "tally", env=env),
        )
        assert again == 1 and "no dead letter" in again_out, again_out
        assert listed == 0 and letter.id not in list_out and "0 dead letter(s)" in list_out
        assert await count_of(engine, "acc-frozen") == 1


async def record(uow, account: str):  # type: ignore[no-untyped-def]
    return await ledger.record_entry(uow, account, Decimal("5.00"))


async def _status(engine: Database, status: str) -> bool:
    return [r.status for r in await letters(engine)] == [status]


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


@pytest.fixture
async def engine(template: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    engine = await service_engine(template, "tally", tmp_path)
    yield engine
    await engine.dispose()


def tally_consumer(engine: Database) -> InboxConsumer:
    return InboxConsumer("tally", engine, tally.service.handlers, policy=RetryPolicy(1))


async def test_a_redrive_that_fails_again_returns_to_dead_with_the_new_error(
    engine: Database,
) -> None:
    await freeze(engine, "acc-1")
    await tally_consumer(engine)([raw(entry_event("acc-1"))])
    [letter] = await letters(engine)
    assert await request_redrive(engine, letter.id) == 1
    assert await Redriver(engine, tally_consumer(engine)).redrive_once() == 0
    [again] = await letters(engine)
    assert again.status == "dead" and again.attempts == letter.attempts + 1
    assert "frozen" in again.error and await count_of(engine, "acc-1") == 0


async def test_two_replicas_redrive_each_letter_once(
    engine: Database, template: str | None, tmp_path: Path
) -> None:
    """Each replica runs a Redriver; a letter is claimed by one of them only."""
    for n in range(1, 6):
        await freeze(engine, f"acc-{n}")
        await tally_consumer(engine)([raw(entry_event(f"acc-{n}"))])
        await thaw(engine, f"acc-{n}")
    assert await request_redrive(engine, None) == 5
    other = open_database(service_url(template, "tally", tmp_path))
    try:
        done = await asyncio.gather(
            Redriver(engine, tally_consumer(engine)).redrive_once(),
            Redriver(other, tally_consumer(other)).redrive_once(),
        )
    finally:
        await other.dispose()
    assert sum(done) == 5, done
    assert [await count_of(engine, f"acc-{n}") for n in range(1, 6)] == [1] * 5
    assert {r.status for r in await letters(engine)} == {"redriven"}


async def test_two_redrives_and_a_discard_of_one_letter_at_once_act_once(
    engine: Database, template: str | None, tmp_path: Path
) -> None:
    """An operator's redrive on two replicas and a discard, all at once: one conditional
    update decides which of them acts; the others are told the letter is no longer open."""
    for n in range(1, 6):  # five letters, five rounds
        await freeze(engine, f"acc-{n}")
        await tally_consumer(engine)([raw(entry_event(f"acc-{n}"))])
        await thaw(engine, f"acc-{n}")
    other = open_database(service_url(template, "tally", tmp_path))
    try:
        for letter in await letters(engine):
            outcomes = await asyncio.gather(
                redrive_now(engine, tally_consumer(engine), letter.id),
                redrive_now(other, tally_consumer(other), letter.id),
                discard(other, letter.id, "not wanted"),
                return_exceptions=True,
            )
            acted = [o for o in outcomes if not isinstance(o, NotOpen)]
            assert len(acted) == 1, outcomes
            [after] = [r for r in await letters(engine) if r.id == letter.id]
            assert after.status in ("redriven", "discarded")
            account = json.loads(bytes(after.body))["account"]
            assert await count_of(engine, account) == (after.status == "redriven")
    finally:
        await other.dispose()


async def test_a_discarded_letter_keeps_its_reason_and_cannot_be_redriven(
    engine: Database,
) -> None:
    await freeze(engine, "acc-1")
    await tally_consumer(engine)([raw(entry_event("acc-1"))])
    [letter] = await letters(engine)
    with pytest.raises(ValueError, match="a reason of 1 to 500 characters"):
        await discard(engine, letter.id, " ")
    assert await discard(engine, "no-such-letter", "gone") is None
    kept = await discard(engine, letter.id, "  the account was closed ")
    assert kept is not None and kept.status == "discarded"
    assert kept.discard_reason == "the account was closed" and kept.discarded_at is not None
    with pytest.raises(NotOpen, match="discarded"):
        await discard(engine, letter.id, "again")
    with pytest.raises(NotOpen, match="discarded"):
        await redrive_now(engine, tally_consumer(engine), letter.id)
    assert await request_redrive(engine, letter.id) == 0
    assert [r.id for r in await list_dead_letters(engine, status="discarded")] == [letter.id]
    assert await list_dead_letters(engine, status="open") == []
    assert await count_of(engine, "acc-1") == 0


async def test_a_letter_with_a_nul_byte_redriven_fails_cleanly_back_to_dead(
    engine: Database,
) -> None:
    """PostgreSQL's TEXT refuses NUL: the body is kept as bytes, and a redrive that cannot
    decode it again puts it back among the dead with its bytes intact."""
    event = entry_event("acc-1")
    message = raw(event)
    body = message.body.replace(b'"acc-1"', b'"acc\x00-1"')  # a raw NUL: not JSON
    poisoned = RawMessage(message.topic, message.headers, body, message.prefix)
    assert await tally_consumer(engine)([poisoned]) == [None], "stored and acknowledged"
    [letter] = await letters(engine)
    assert bytes(letter.body) == body and "body is not JSON" in letter.error
    assert (letter.event_id, letter.event_type) == (event.id, "EntryRecorded")
    [listed] = await list_dead_letters(engine)
    assert listed.id == letter.id

    assert await request_redrive(engine, letter.id) == 1
    assert await Redriver(engine, tally_consumer(engine)).redrive_once() == 0
    [again] = await letters(engine)
    assert again.status == "dead" and again.attempts == letter.attempts + 1
    assert bytes(again.body) == body and "body is not JSON" in again.error


async def test_text_the_database_refuses_is_stored_escaped(engine: Database) -> None:
    """A NUL in a header: the letter's id and type keep it as ``\\x00``."""
    event = entry_event("acc-1")
    message = raw(event)
    headers = {**message.headers, f"{message.prefix}type": "Entry\x00Recorded"}
    poisoned = RawMessage(message.topic, headers, message.body, message.prefix)
    assert await tally_consumer(engine)([poisoned]) == [None]
    [letter] = await letters(engine)
    assert letter.event_type == "Entry\\x00Recorded"
    assert "unknown event type 'Entry\\x00Recorded'" in letter.error
    assert json.loads(letter.headers)[f"{message.prefix}type"] == "Entry\x00Recorded"


async def test_old_dead_letters_keep_their_bodies_as_utf8_bytes(
    template: str | None, tmp_path: Path
) -> None:
    """The migration to a bytes column keeps what TEXT held."""
    url = service_url(template, "old", tmp_path)
    await ensure_database(url)
    cfg = alembic_config(None)
    engine = schema_engine(url)

    def upgrade_to(revision: str) -> Callable[[Any], None]:
        def run(conn: Any) -> None:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        return run

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("platform_0002"))
            await conn.execute(
                text(
                    "INSERT INTO dead_letters (id, consumer, headers, body, error, attempts,"
                    " status, failed_at) VALUES ('l1', 'c', '{}', 'caf\u00e9 {}', 'e', 1,"
                    " 'dead', CURRENT_TIMESTAMP)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("heads"))
    finally:
        await engine.dispose()
    db = open_database(url)
    try:
        [letter] = await letters(db)
    finally:
        await db.dispose()
    assert bytes(letter.body) == "café {}".encode()
    # platform_0004: its first failure is the one it kept; open, with no discard.
    assert letter.first_failed_at == letter.failed_at and letter.status == "dead"
    assert letter.discard_reason is None and letter.discarded_at is None


async def test_a_letter_the_database_refuses_is_stored_escaped_or_logged_never_retried(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal nobody foresaw: the letter is stored with its text ASCII-escaped; if that is
    refused too, the whole message goes into the log and is acknowledged. Only a lost
    connection keeps the message on the broker (a Retry)."""
    consumer = tally_consumer(engine)
    store = consumer._store
    refusals: list[int] = []

    def refusing(times: int, error: Exception) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def refuse(letter: dict[str, Any]) -> None:
            if len(refusals) < times:
                refusals.append(1)
                raise error
            await store(letter)

        return refuse

    unforeseen = DataError("INSERT", (), Exception("value too long for type"))
    monkeypatch.setattr(consumer, "_store", refusing(1, unforeseen))
    poisoned = RawMessage("t", {"ce-type": "Entry\u00e9"}, b"\xff", "ce-")
    assert await consumer([poisoned]) == [None]
    [letter] = await letters(engine)
    assert letter.event_type == "Entry\\xe9" and "value too long" in letter.error

    refusals.clear()
    monkeypatch.setattr(consumer, "_store", refusing(2, unforeseen))
    with structlog.testing.capture_logs() as logs:
        assert await consumer([poisoned]) == [None]
    [logged] = [e for e in logs if e["log_level"] == "critical"]
    assert logged["body"] == "/w==" and "ce-type" in logged["headers"]
    assert len(await letters(engine)) == 1

    refusals.clear()
    lost = OperationalError("connect", (), ConnectionRefusedError(111, "refused"))
    monkeypatch.setattr(consumer, "_store", refusing(1, lost))
    [verdict] = await consumer([poisoned])
    assert verdict is not None, "kept on the broker to be tried again"
