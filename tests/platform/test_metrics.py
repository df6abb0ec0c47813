"""The handler metrics of a consumer: each event's outcome (handled, duplicate, retried,
dead_lettered) and its handlers' time, by consumer and event type."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mercato.platform.bus.port import ACK, Retry
from mercato.platform.inbox import InboxConsumer, RetryPolicy
from mercato.platform.storage.sql import Database
from tests.demo import tally
from tests.demo.probe import entry_event, freeze, raw, service_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Database]:
    engine = await service_engine(None, "tally", tmp_path)
    yield engine
    await engine.dispose()


def outcome(consumer: str, event_type: str, what: str) -> float:
    labels = {"consumer": consumer, "event_type": event_type, "outcome": what}
    return REGISTRY.get_sample_value("mercato_handler_outcomes_total", labels) or 0.0


def timed(consumer: str, event_type: str) -> float:
    labels = {"consumer": consumer, "event_type": event_type}
    return REGISTRY.get_sample_value("mercato_handler_duration_seconds_count", labels) or 0.0


async def test_each_outcome_of_an_event_is_counted(engine: Database) -> None:
    name = "tally-metrics"
    consumer = InboxConsumer(name, engine, tally.service.handlers, policy=RetryPolicy(2, 0.01))
    good, bad = entry_event("acc-ok"), entry_event("acc-frozen")
    await freeze(engine, "acc-frozen")
    assert await consumer([raw(good)]) == [ACK]
    assert await consumer([raw(good)]) == [ACK]  # a redelivery: the inbox skips it
    assert await consumer([raw(bad)]) == [Retry(0.01)]
    assert await consumer([dataclasses.replace(raw(bad), attempt=2)]) == [ACK]  # dead letter
    broken = dataclasses.replace(raw(good), headers={**raw(good).headers, "ce-type": "Nope"})
    assert await consumer([broken]) == [ACK]  # no handler: a dead letter at once

    kind = "EntryRecorded"
    assert outcome(name, kind, "handled") == 1 and timed(name, kind) == 1
    assert outcome(name, kind, "duplicate") == 1
    assert outcome(name, kind, "retried") == 1
    assert outcome(name, kind, "dead_lettered") == 1
    assert outcome(name, "unknown", "dead_lettered") == 1, "a type it does not know: no label"
