"""Tracing in the platform: an event's ``process`` spans stay in its producer's trace after a
retry, a redelivery, a batch and a redrive; log lines inside a span carry its ids; tracing
turns on only when the OTEL_* variables ask for it."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mercato.platform import tracing
from mercato.platform.bus.port import ACK, Retry, topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.inbox import InboxConsumer, RetryPolicy
from mercato.platform.logs import configure_logging
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import transaction
from tests.demo import tally
from tests.demo.probe import entry_event, freeze, letters, raw, service_engine, thaw


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Database]:
    engine = await service_engine(None, "tally", tmp_path)
    yield engine
    await engine.dispose()


async def produced(account: str) -> Envelope:
    """An event as the ledger's transaction writes it: under a request's span, with its
    ``create`` span's context as its traceparent."""
    otel = tracing.otel
    assert otel is not None
    with otel.tracer("ledger").start_as_current_span("request", kind=SpanKind.SERVER):
        event = entry_event(account)
        traceparent = otel.created("ledger", event, topic_of(event), None)
    return event.with_(traceparent=traceparent)


def spans_named(exported: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans() if s.name == name]


def creator(exported: InMemorySpanExporter, event: Envelope) -> ReadableSpan:
    return next(
        s
        for s in spans_named(exported, "create EntryRecorded")
        if s.attributes is not None and s.attributes["messaging.message.id"] == event.id
    )


def is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    assert span.parent is not None and parent.context is not None
    return span.parent.span_id == parent.context.span_id


def delivery(event: Envelope, attempt: int) -> object:
    return dataclasses.replace(raw(event), attempt=attempt)


async def test_a_retried_and_redriven_event_stays_in_its_producers_trace(
    engine: Database, exported: InMemorySpanExporter
) -> None:
    consumer = InboxConsumer(
        "tally", engine, tally.service.handlers, policy=RetryPolicy(2, 0.01), system="rabbitmq"
    )
    event = await produced("acc-frozen")
    await freeze(engine, "acc-frozen")
    assert await consumer([delivery(event, 1)]) == [Retry(0.01)]  # type: ignore[list-item]
    assert await consumer([delivery(event, 2)]) == [ACK]  # type: ignore[list-item]
    [letter] = await letters(engine)  # the second failure made it a dead letter
    await thaw(engine, "acc-frozen")
    assert await consumer.redrive(letter) is None

    create = creator(exported, event)
    processed = spans_named(exported, "process EntryRecorded")
    assert len(processed) == 3, "the first try, the redelivery, the redrive"
    for span in processed:
        assert span.kind == SpanKind.CONSUMER and is_child(span, create)
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "rabbitmq"
        assert span.attributes["messaging.message.id"] == event.id
    attempts = [s.attributes["mercato.delivery.attempt"] for s in processed if s.attributes]
    assert attempts[:2] == [1, 2]
    failed = [s for s in processed if not s.status.is_ok]
    assert len(failed) == 2 and "frozen" in str(failed[0].status.description)
    # Each try's transaction is a child of its process span, rolled back but the last.
    transactions = spans_named(exported, "transaction")
    assert [t.attributes["mercato.db.committed"] for t in transactions if t.attributes] == [
        False,
        False,
        True,
    ]
    assert all(any(is_child(t, p) for p in processed) for t in transactions)


async def test_a_batch_keeps_each_event_in_its_own_trace_and_links_them(
    engine: Database, exported: InMemorySpanExporter
) -> None:
    consumer = InboxConsumer("tally", engine, tally.service.handlers)
    first, second = await produced("acc-1"), await produced("acc-2")
    assert await consumer([raw(first), raw(second), raw(first)]) == [ACK, ACK, ACK]

    [batch] = spans_named(exported, "process tally")
    assert batch.parent is None and batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    processed = spans_named(exported, "process EntryRecorded")
    assert {link.context.span_id for link in batch.links} == {
        s.context.span_id for s in processed if s.context is not None
    }
    for event in (first, second):
        mine = [
            s
            for s in processed
            if s.attributes is not None and s.attributes["messaging.message.id"] == event.id
        ]
        assert mine and all(is_child(s, creator(exported, event)) for s in mine)
    duplicates = [s for s in processed if s.attributes and s.attributes.get("mercato.duplicate")]
    assert len(duplicates) == 1, "the second copy of the first event was skipped"
    [held] = spans_named(exported, "transaction")
    assert is_child(held, batch)


async def test_a_transaction_counts_its_statements(
    engine: Database, exported: InMemorySpanExporter
) -> None:
    async with transaction(engine, "tally") as uow:
        await uow.conn.execute(tally.frozen_accounts.insert(), [{"account": "a"}])
        await uow.conn.execute(tally.frozen_accounts.delete())
    [span] = spans_named(exported, "transaction")
    assert span.attributes is not None
    assert span.attributes["db.statement.count"] == 2
    assert span.attributes["db.system.name"] == "sqlite"
    assert span.resource.attributes["service.name"] == "tally"


def test_log_lines_inside_a_span_carry_its_ids(exported: InMemorySpanExporter) -> None:
    otel = tracing.otel
    assert otel is not None
    written = io.StringIO()
    with redirect_stderr(written):
        configure_logging("info", "json")
        log = structlog.get_logger("test")
        log.info("outside")
        with otel.tracer("order").start_as_current_span("work") as span:
            log.info("inside")
            context = span.get_span_context()
        configure_logging("info", "auto")
    outside, inside = (json.loads(line) for line in written.getvalue().splitlines())
    assert "span_id" not in outside and "trace_id" not in outside
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_ask(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_off_nothing_of_the_sdk_is_imported() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mercato.platform.runtime.system, mercato.services.gateway.app;"
        "from mercato.platform import tracing;"
        "assert tracing.otel is None;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={}
    )
    assert found.stdout.strip() == "[]"


def test_an_exporter_mercato_does_not_speak_is_refused() -> None:
    with pytest.raises(ValueError, match="zipkin"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert tracing.otel is None


def unsampled(event: Envelope) -> Envelope:
    """The event as a producer whose trace the sampler dropped would have sent it."""
    return event.with_(traceparent=f"00-{'ab' * 16}-{'cd' * 8}-00")


async def test_an_unsampled_trace_makes_no_span_and_its_context_travels_on(
    engine: Database, exported: InMemorySpanExporter
) -> None:
    """A parent-based sampler drops every child of an unsampled context: none is made. The
    context itself is what the handlers see and what the events they write carry."""
    otel = tracing.otel
    assert otel is not None
    consumer = InboxConsumer("tally", engine, tally.service.handlers)
    dropped, kept = unsampled(entry_event("acc-1")), await produced("acc-2")
    assert await consumer([raw(dropped), raw(kept)]) == [ACK, ACK]
    [processed] = spans_named(exported, "process EntryRecorded")  # the sampled event's only
    assert is_child(processed, creator(exported, kept))
    [batch] = spans_named(exported, "process tally")
    assert [link.context.span_id for link in batch.links] == [processed.context.span_id]  # type: ignore[union-attr]

    exported.clear()
    second, third = unsampled(entry_event("acc-3")), unsampled(entry_event("acc-4"))
    assert await consumer([raw(second), raw(third)]) == [ACK, ACK]
    assert await consumer([raw(unsampled(entry_event("acc-5")))]) == [ACK]
    assert exported.get_finished_spans() == (), "no process, batch or transaction span"

    # While an unsampled event is handled, its context is current: an event written then
    # carries it on, and the transaction makes no span.
    processing = otel.Processing("tally", "memory", [(second, "t", 1), (third, "t", 1)])
    with processing.item(1):
        made = entry_event("acc-6")
        assert otel.created("tally", made, topic_of(made), None) == third.traceparent
        async with transaction(engine, "tally"):
            pass
    processing.end(None)
    # Outside any span, the cause's unsampled context.
    assert otel.created("tally", made, topic_of(made), third) == third.traceparent
    assert exported.get_finished_spans() == ()
    spans = otel.publishing("tally", "memory", [("t.a", third), ("t.b", kept)])
    assert spans[0] is None
    otel.published(spans, [True, True])
    assert [s.name for s in exported.get_finished_spans()] == ["publish t.b"]
