"""What only the NATS adapter does: subject mapping, server-side dedupe, the delivery limit's
advisory turned into a dead letter, a stop that finishes its batch, bounded publishes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mercato.platform.bus.nats import NatsBus, durable_name, pattern_subject, topic_subject
from mercato.platform.bus.port import RawMessage, Retry, Verdict, pattern_for, topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.inbox import InboxConsumer, on
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.tables import dead_letters
from tests.conftest import eventually
from tests.platform.test_bus_contract import Pinged, ping

PATTERN = pattern_for("Pinged")


def test_amqp_patterns_become_nats_subjects() -> None:
    assert pattern_subject("ns", "*.Pinged") == "ns.events.*.Pinged"
    assert pattern_subject("ns", "order.#") == "ns.events.order.>"
    assert pattern_subject("ns", "#") == "ns.events.>"
    assert topic_subject("ns", "order.OrderStatusChanged.PAID") == (
        "ns.events.order.OrderStatusChanged.PAID"
    )
    with pytest.raises(ValueError, match="'#' except as the last word"):
        pattern_subject("ns", "#.Pinged")
    for bad_topic in ("order.*", "order..Paid", "order.Paid Now", "order.>"):
        with pytest.raises(ValueError, match="invalid topic"):
            topic_subject("ns", bad_topic)


def test_durable_names_are_legal_and_distinct() -> None:
    names = {durable_name("svc-a", p) for p in ("*.Pinged", "*.Pinged.#", "a_b.Pinged", "a.b")}
    assert len(names) == 4
    assert all(not set(".*> ") & set(n) for n in names)
    assert durable_name("svc-a", "*.Pinged").startswith("svc-a__any_Pinged_")


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[NatsBus]:
    bus = NatsBus(nats_url, namespace=f"mtest{uuid.uuid4().hex[:8]}")
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()
        again = NatsBus(nats_url, namespace=bus.namespace)
        await again.connect()
        await again.delete_namespace()
        await again.close()


async def _process(url: str, namespace: str, **options: float) -> NatsBus:
    """Another process of the same system: its own connection to the same namespace."""
    bus = NatsBus(url, namespace=namespace, **options)
    await bus.connect()
    return bus


class Recorder:
    """A processor that records what it sees and answers with a fixed verdict."""

    def __init__(self, verdict: Verdict = None):
        self.seen: list[RawMessage] = []
        self.verdict = verdict
        self.gate: asyncio.Event | None = None

    async def __call__(self, batch: Sequence[RawMessage]) -> list[Verdict]:
        self.seen.extend(batch)
        if self.gate is not None:
            await self.gate.wait()
        return [None if m.exhausted else self.verdict for m in batch]


async def test_a_relay_retry_is_dropped_by_the_server(bus: NatsBus) -> None:
    seen = Recorder()
    await bus.subscribe("svc-a", [PATTERN], seen)
    event = ping(1)
    assert await bus.publish([(topic_of(event), event)] * 3) == [True, True, True]
    await bus.publish([(topic_of(e), e) for e in [ping(2)]])
    await eventually(lambda: len(seen.seen) == 2)
    await asyncio.sleep(0.2)
    assert len(seen.seen) == 2
    first = seen.seen[0]
    assert first.headers["ce-id"] == event.id and first.attempt == 1 and first.prefix == "ce-"
    assert first.topic == "pinger.Pinged"


async def test_a_message_past_the_delivery_limit_reaches_the_processor_as_exhausted(
    bus: NatsBus,
) -> None:
    failing, bystander = Recorder(Retry(0.05)), Recorder(Retry(0.05))
    await bus.subscribe("svc-a", [PATTERN], failing, max_deliveries=3)
    await bus.subscribe("svc-b", ["*.Other"], bystander, max_deliveries=3)
    event = ping(5)
    await bus.publish([(topic_of(event), event)])
    exhausted = await eventually(lambda: [m for m in failing.seen if m.exhausted])
    assert [m.attempt for m in failing.seen] == [1, 2, 3, 3]
    assert exhausted[0].headers["ce-id"] == event.id and exhausted[0].topic == "pinger.Pinged"
    assert exhausted[0].body == event.to_binary("ce-")[1]
    await asyncio.sleep(0.3)
    assert len(failing.seen) == 4, "acknowledged once stored: not handed over again"
    assert bystander.seen == [], "another service ignores the advisory"


async def test_an_event_whose_handler_kills_its_process_ends_as_a_dead_letter(
    bus: NatsBus, nats_url: str, tmp_path: Path
) -> None:
    engine = open_database(service_url(None, "svc-a", tmp_path))
    await migrate(engine, None)
    crashing = asyncio.Event()
    dead = asyncio.Event()

    async def kills_its_process(event: Pinged, uow: Any) -> None:
        crashing.set()
        await dead.wait()  # its connection is closed: nothing it does reaches the broker
        raise RuntimeError("the process is gone")

    inbox = InboxConsumer("svc-a", engine, [on(Pinged, kills_its_process)])
    event = ping(9)
    doomed: list[NatsBus] = []
    for _ in range(2):  # two processes die on it: the broker's limit
        process = await _process(nats_url, bus.namespace, ack_wait=1.0)
        await process.subscribe("svc-a", inbox.patterns, inbox, max_deliveries=2)
        if not doomed:
            await bus.publish([(topic_of(event), event)])
        await eventually(crashing.is_set)
        crashing.clear()
        assert process._nc is not None
        await process._nc.close()  # SIGKILL, as the broker sees it: no ack, no nak
        dead.set()  # and its transaction rolls back
        await asyncio.sleep(0.1)
        dead.clear()
        doomed.append(process)

    survivor = await _process(nats_url, bus.namespace, ack_wait=1.0)
    await survivor.subscribe("svc-a", inbox.patterns, inbox, max_deliveries=2)

    async def letters() -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(select(dead_letters))).all())

    found = await eventually(letters)
    assert [(d.event_id, d.attempts) for d in found] == [(event.id, 2)]
    assert "delivery limit" in found[0].error
    assert not crashing.is_set(), "the surviving process stored it without handling it"
    for process in [*doomed, survivor]:
        await process.close()
    await engine.dispose()


async def test_stop_finishes_the_batch_in_hand_and_leaves_the_rest_queued(
    bus: NatsBus, nats_url: str
) -> None:
    slow = Recorder()
    slow.gate = asyncio.Event()
    busy = await bus.subscribe("svc-a", [PATTERN], slow)
    idle = await bus.subscribe("svc-a", [PATTERN], Recorder())
    await bus.publish([(topic_of(e), e) for e in [ping(1)]])
    await eventually(lambda: slow.seen)
    stopping = asyncio.ensure_future(busy.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop waits for the batch in hand"
    slow.gate.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.wait_for(idle.stop(), 5)  # while its pull is open on the server

    later = ping(2)
    await bus.publish([(topic_of(later), later)])
    await asyncio.sleep(0.2)
    assert len(slow.seen) == 1, "a stopped subscription takes nothing more"
    replica = await _process(nats_url, bus.namespace)
    fresh = Recorder()
    await replica.subscribe("svc-a", [PATTERN], fresh)
    # Soon, not after ack_wait (30 s): the first message was acknowledged, and the open pulls
    # of the stopped subscriptions went with their inboxes.
    await eventually(lambda: fresh.seen)
    assert [m.headers["ce-id"] for m in fresh.seen] == [later.id]
    await replica.close()


async def test_publish_without_the_stream_reports_failure_instead_of_hanging(
    bus: NatsBus,
) -> None:
    await bus.delete_namespace()
    event = ping(1)
    confirmed = await asyncio.wait_for(bus.publish([(topic_of(event), event)] * 2), 15)
    assert confirmed == [False, False]


async def test_bad_topics_publish_nothing(bus: NatsBus) -> None:
    seen = Recorder()
    await bus.subscribe("svc-a", ["#"], seen)
    good = ping(1)
    with pytest.raises(ValueError, match="invalid topic"):
        await bus.publish([(topic_of(good), good), ("pinger.*", ping(2))])
    await asyncio.sleep(0.2)
    assert seen.seen == []


async def test_ping_needs_a_connection(nats_url: str) -> None:
    bus = NatsBus(nats_url, namespace=f"mtest{uuid.uuid4().hex[:8]}")
    with pytest.raises(ConnectionError):
        await bus.ping()
    await bus.connect()
    await bus.ping()
    await bus.delete_namespace()
    await bus.close()
    with pytest.raises(ConnectionError):
        await bus.ping()
    with pytest.raises(ValueError):
        NatsBus(nats_url, namespace="mercato.prod")


async def test_patterns_of_one_subscription_meet_in_one_batch(bus: NatsBus) -> None:
    """One durable per pattern, one processor: what the other patterns bring while a batch is
    in the processor goes together into the next one (one transaction, as on RabbitMQ)."""
    seen = Recorder()
    seen.gate = asyncio.Event()
    batches: list[list[str]] = []

    async def processor(batch: Sequence[RawMessage]) -> list[Verdict]:
        batches.append(sorted(m.topic for m in batch))
        return await seen(batch)

    await bus.subscribe("svc-a", ["gate.#", "pinger.Pinged", "pinger.Other"], processor)
    first = Envelope(type="Pinged", source="mercato/gate", data={"pingId": "g"})
    await bus.publish([(topic_of(first), first)])
    await eventually(lambda: batches)  # the first batch waits at the gate
    other = Envelope(type="Other", source="mercato/pinger", data={"pingId": "o"})
    await bus.publish([(topic_of(e), e) for e in [ping(2), other]])
    await asyncio.sleep(0.3)  # both other pullers have handed theirs in by now
    seen.gate.set()
    await eventually(lambda: len(seen.seen) == 3)
    assert batches == [["gate.Pinged"], ["pinger.Other", "pinger.Pinged"]]
