"""Logs: the standard library's records come out as the same JSON lines as structlog's."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from mercato.platform.logs import configure_logging


def test_a_library_warning_with_a_traceback_is_one_json_line(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    try:
        raise ConnectionResetError("Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger("aiormq.connection").warning(
            "Unexpected connection close from remote %r", "amqp://broker", exc_info=True
        )
    structlog.get_logger("mercato").info("relay idle", batches=0)

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    library, ours = (json.loads(line) for line in lines)
    assert library["event"] == "Unexpected connection close from remote 'amqp://broker'"
    assert library["level"] == "warning" and library["logger"] == "aiormq.connection"
    assert "Traceback" in library["exception"] and "ConnectionResetError" in library["exception"]
    assert "timestamp" in library
    assert ours["event"] == "relay idle" and ours["batches"] == 0


def test_records_below_the_level_are_left_out(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("warning", "json")
    logging.getLogger("asyncpg.pool").info("connection opened")
    assert capsys.readouterr().err == ""


def test_a_library_record_goes_to_stderr_as_it_is_now(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI test's stderr is closed after the command; records that come later go to the
    stderr of their time, not to the closed one ("Logging error" and a traceback)."""
    import io

    then = io.StringIO()
    monkeypatch.setattr("sys.stderr", then)
    configure_logging("info", "json")
    then.close()
    now = io.StringIO()
    monkeypatch.setattr("sys.stderr", now)
    logging.getLogger("aiosqlite").warning("late")
    assert json.loads(now.getvalue())["event"] == "late"
