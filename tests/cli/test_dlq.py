"""``mercato dlq``: listing, marking for redrive, and clear errors for bad arguments."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from mercato.cli.main import app
from mercato.platform.bus.port import RawMessage
from mercato.platform.dead_letters import Redriver
from mercato.platform.inbox import InboxConsumer, RetryPolicy
from tests.demo import tally
from tests.demo.probe import count_of, entry_event, freeze, letters, raw, service_engine, thaw

runner = CliRunner()


def dlq(data_dir: Path, *args: str) -> tuple[int, str]:
    saved = structlog.get_config()
    result = runner.invoke(
        app, ["dlq", *args], env={"MERCATO_DATA_DIR": str(data_dir), "COLUMNS": "400"}
    )
    structlog.configure(**saved)  # the command logged onto CliRunner's now closed stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A tally database holding two dead letters (their accounts were frozen, now thawed)."""

    async def make() -> None:
        engine = await service_engine(None, "tally", tmp_path)
        consumer = InboxConsumer("tally", engine, tally.service.handlers, policy=RetryPolicy(1))
        for account in ("acc-1", "acc-2"):
            await freeze(engine, account)
            await consumer([raw(entry_event(account))])
            await thaw(engine, account)
        await engine.dispose()

    asyncio.run(make())
    return tmp_path


def test_list_shows_each_dead_letter_with_its_error(data_dir: Path) -> None:
    code, out = dlq(data_dir, "list", "--service", "tally")
    assert code == 0, out
    assert out.count("EntryRecorded") == 2 and "account acc-1 is frozen" in out
    assert "2 dead letter(s)" in out


def test_a_service_that_never_ran_has_no_dead_letters(tmp_path: Path) -> None:
    code, out = dlq(tmp_path, "list", "--service", "tally")
    assert code == 0 and "0 dead letter(s)" in out, out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["redrive"], 2, "give one dead letter ID, or --all"),
        (["redrive", "some-id", "--all"], 2, "give one dead letter ID, or --all"),
        (["redrive", "no-such-letter"], 1, "no dead letter 'no-such-letter' waiting"),
    ],
)
def test_bad_redrive_arguments_are_clear_errors(
    data_dir: Path, args: list[str], code: int, message: str
) -> None:
    exit_code, out = dlq(data_dir, *args, "--service", "tally")
    assert exit_code == code, out
    assert message in out
    assert [r.status for r in asyncio.run(_letters(data_dir))] == ["dead", "dead"], "untouched"


def test_redrive_all_hands_every_letter_back_once(data_dir: Path) -> None:
    code, out = dlq(data_dir, "redrive", "--all", "--service", "tally")
    assert code == 0 and "2 dead letter(s) marked for redrive" in out, out

    async def redrive() -> tuple[int, list[int]]:
        engine = await service_engine(None, "tally", data_dir)
        consumer = InboxConsumer("tally", engine, tally.service.handlers)
        done = await Redriver(engine, consumer).redrive_once()
        counts = [await count_of(engine, a) for a in ("acc-1", "acc-2")]
        await engine.dispose()
        return done, counts

    assert asyncio.run(redrive()) == (2, [1, 1])
    code, out = dlq(data_dir, "list", "--service", "tally")
    assert "0 dead letter(s)" in out
    code, out = dlq(data_dir, "list", "--all", "--service", "tally")
    assert out.count("redriven") == 2 and "2 dead letter(s)" in out
    code, out = dlq(data_dir, "redrive", "--all", "--service", "tally")
    assert code == 0 and "0 dead letter(s) marked" in out


async def _letters(data_dir: Path) -> list[Any]:
    engine = await service_engine(None, "tally", data_dir)
    try:
        return await letters(engine)
    finally:
        await engine.dispose()


def test_show_prints_a_letter_whose_body_holds_a_nul_byte_readably(tmp_path: Path) -> None:
    async def make() -> str:
        engine = await service_engine(None, "tally", tmp_path)
        consumer = InboxConsumer("tally", engine, tally.service.handlers, policy=RetryPolicy(1))
        message = raw(entry_event("acc-1"))
        body = message.body.replace(b'"acc-1"', b'"acc\x00-1\xff"')
        await consumer([RawMessage(message.topic, message.headers, body, message.prefix)])
        [letter] = await letters(engine)
        await engine.dispose()
        return str(letter.id)

    letter_id = asyncio.run(make())
    code, out = dlq(tmp_path, "list", "--service", "tally")
    assert code == 0 and letter_id in out and "body is not JSON" in out, out
    code, out = dlq(tmp_path, "show", letter_id, "--service", "tally")
    assert code == 0, out
    assert '"account":"acc\\x00-1\\xff"' in out and "EntryRecorded" in out, out
    code, out = dlq(tmp_path, "show", "no-such-letter", "--service", "tally")
    assert code == 1 and "no dead letter 'no-such-letter'" in out, out


def test_discard_keeps_the_letter_with_its_reason(data_dir: Path) -> None:
    [first, second] = asyncio.run(_letters(data_dir))
    code, out = dlq(data_dir, "discard", f"tally.{first.id}")
    assert code == 2 and "--reason" in out, out
    code, out = dlq(data_dir, "discard", f"tally.{first.id}", "--reason", "  ")
    assert code == 2 and "a reason of 1 to 500 characters is required" in out, out
    code, out = dlq(data_dir, "discard", f"tally.{first.id}", "--reason", "account closed")
    assert code == 0 and f"tally.{first.id} discarded: account closed" in out, out
    code, out = dlq(data_dir, "discard", first.id, "--reason", "again", "--service", "tally")
    assert code == 1 and "the dead letter is discarded" in out, out
    code, out = dlq(data_dir, "redrive", f"tally.{first.id}")
    assert code == 1 and "no dead letter" in out, out
    code, out = dlq(data_dir, "discard", "tally.no-such-letter", "--reason", "x")
    assert code == 1 and "no dead letter 'tally.no-such-letter'" in out, out
    code, out = dlq(data_dir, "discard", f"tally.{first.id}", "--reason", "x", "--service", "order")
    assert code == 2 and "a dead letter of tally, not of order" in out, out

    code, out = dlq(data_dir, "list", "--service", "tally")
    assert first.id not in out and second.id in out and "1 dead letter(s)" in out, out
    code, out = dlq(data_dir, "list", "--all", "--service", "tally")
    assert first.id in out and "discarded" in out and "2 dead letter(s)" in out, out
    code, out = dlq(data_dir, "show", f"tally.{first.id}")
    assert code == 0 and "status: discarded" in out and "account closed" in out, out
    statuses = sorted(r.status for r in asyncio.run(_letters(data_dir)))
    assert statuses == ["dead", "discarded"]
