"""What only the RabbitMQ adapter does: the wire format, delivery counts from the quorum queue,
the broker's delivery limit turned into a dead letter, a stop that finishes its batch, order
kept by pipelined confirms, and publishes that fail cleanly while the broker is away."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aio_pika
import pytest
from sqlalchemy import select

from mercato.platform.bus.port import RawMessage, Retry, Verdict, pattern_for, topic_of
from mercato.platform.bus.rabbitmq import RabbitBus
from mercato.platform.inbox import InboxConsumer, on
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.tables import dead_letters
from tests.conftest import eventually
from tests.platform.test_bus_contract import Pinged, ping
from tests.platform.test_outbox import CuttableProxy

PATTERN = pattern_for("Pinged")


class Processes:
    """RabbitBus instances of one throwaway namespace, as separate processes would hold them."""

    def __init__(self, url: str):
        self.url = url
        self.namespace = f"mtest{uuid.uuid4().hex[:8]}"
        self.buses: list[RabbitBus] = []

    async def start(self, url: str | None = None, **options: float) -> RabbitBus:
        bus = RabbitBus(url or self.url, namespace=self.namespace, **options)
        await bus.connect()
        self.buses.append(bus)
        return bus

    async def close(self) -> None:
        for bus in self.buses:
            await bus.close()
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            for name in (f"{self.namespace}.svc-a", f"{self.namespace}.svc-a.dead"):
                await channel.queue_delete(name, if_unused=False)
            for name in (f"{self.namespace}.events", f"{self.namespace}.dead-letters"):
                await channel.exchange_delete(name)


@pytest.fixture
async def processes(rabbitmq_url: str) -> AsyncIterator[Processes]:
    world = Processes(rabbitmq_url)
    try:
        yield world
    finally:
        await world.close()


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


async def test_events_travel_as_persistent_binary_cloudevents(processes: Processes) -> None:
    bus = await processes.start()
    seen = Recorder()
    await bus.subscribe("svc-a", [PATTERN], seen)
    async with await aio_pika.connect(processes.url) as spy:
        channel = await spy.channel()
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(bus.exchange_name, routing_key="#")
        event = ping(3)
        assert await bus.publish([(topic_of(event), event)]) == [True]
        wire = await eventually(lambda: tap.get(fail=False))
        await wire.ack()
    assert wire.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert wire.message_id == event.id and wire.content_type == "application/json"
    assert wire.routing_key == "pinger.Pinged"
    assert wire.headers["cloudEvents:id"] == event.id
    assert wire.headers["cloudEvents:type"] == "Pinged"
    assert json.loads(wire.body) == {"pingId": event.data["pingId"], "n": 3}

    got = (await eventually(lambda: seen.seen))[0]
    assert got.prefix == "cloudEvents:" and got.topic == "pinger.Pinged" and got.attempt == 1
    assert got.headers["cloudEvents:id"] == event.id and not got.exhausted


async def test_attempts_count_the_redeliveries_and_the_limit_dead_letters(
    processes: Processes,
) -> None:
    bus = await processes.start()
    failing = Recorder(Retry(0.01))
    await bus.subscribe("svc-a", [PATTERN], failing, max_deliveries=3)
    event = ping(5)
    await bus.publish([(topic_of(event), event)])
    exhausted = await eventually(lambda: [m for m in failing.seen if m.exhausted])
    assert [m.attempt for m in failing.seen] == [1, 2, 3, 3]
    assert exhausted[0].headers["cloudEvents:id"] == event.id
    assert exhausted[0].body == event.to_binary("cloudEvents:")[1]
    await asyncio.sleep(0.3)
    assert len(failing.seen) == 4, "acknowledged once stored: not handed over again"


async def test_an_event_whose_handler_kills_its_process_ends_as_a_dead_letter(
    processes: Processes, tmp_path: Path
) -> None:
    engine = open_database(service_url(None, "svc-a", tmp_path))
    await migrate(engine, None)
    crashing, dead = asyncio.Event(), asyncio.Event()

    async def kills_its_process(event: Pinged, uow: Any) -> None:
        crashing.set()
        await dead.wait()  # its connection is closed: nothing it does reaches the broker
        raise RuntimeError("the process is gone")

    inbox = InboxConsumer("svc-a", engine, [on(Pinged, kills_its_process)])
    event = ping(9)
    for n in range(2):  # two processes die on it: the delivery limit
        process = await processes.start()
        subscription = await process.subscribe("svc-a", inbox.patterns, inbox, max_deliveries=2)
        if n == 0:
            await process.publish([(topic_of(event), event)])
        await eventually(crashing.is_set)
        crashing.clear()
        await process.close()  # SIGKILL, as the broker sees it: no ack, no reject
        dead.set()  # and its transaction rolls back
        await subscription.stop()
        dead.clear()

    survivor = await processes.start()
    await survivor.subscribe("svc-a", inbox.patterns, inbox, max_deliveries=2)

    async def letters() -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(select(dead_letters))).all())

    found = await eventually(letters)
    assert [(d.event_id, d.attempts) for d in found] == [(event.id, 2)]
    assert "delivery limit" in found[0].error
    assert not crashing.is_set(), "the surviving process stored it without handling it"
    await engine.dispose()


async def test_stop_finishes_the_batch_in_hand_and_leaves_the_rest_queued(
    processes: Processes,
) -> None:
    bus = await processes.start()
    slow = Recorder()
    slow.gate = asyncio.Event()
    busy = await bus.subscribe("svc-a", [PATTERN], slow, batch_size=1)
    events = [ping(n) for n in range(3)]
    await bus.publish([(topic_of(e), e) for e in events])
    await eventually(lambda: slow.seen)
    stopping = asyncio.ensure_future(busy.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop waits for the batch in hand"
    slow.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert len(slow.seen) == 1, "a stopped subscription takes nothing more"

    replica = await processes.start()
    fresh = Recorder()
    await replica.subscribe("svc-a", [PATTERN], fresh)
    await eventually(lambda: len(fresh.seen) == 2)
    await asyncio.sleep(0.2)
    assert [m.headers["cloudEvents:id"] for m in fresh.seen] == [e.id for e in events[1:]]


async def test_a_pipelined_batch_arrives_in_publish_order(processes: Processes) -> None:
    bus = await processes.start()
    seen = Recorder()
    await bus.subscribe("svc-a", [PATTERN], seen, batch_size=50)
    events = [ping(n) for n in range(300)]
    assert await bus.publish([(topic_of(e), e) for e in events]) == [True] * 300
    await eventually(lambda: len(seen.seen) == 300)
    assert [m.headers["cloudEvents:id"] for m in seen.seen] == [e.id for e in events]


async def test_a_batch_acknowledged_in_one_frame_leaves_a_held_retry_alone(
    processes: Processes,
) -> None:
    """A batch all handled is acknowledged by its last delivery ("this and all before"); a
    message held unacknowledged for its retry meanwhile must not be swept up with it."""
    bus = await processes.start()
    seen: list[int] = []

    async def processor(batch: Sequence[RawMessage]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for message in batch:
            n = json.loads(message.body)["n"]
            seen.append(n)
            verdicts.append(Retry(0.5) if n == 1 and seen.count(1) == 1 else None)
        return verdicts

    await bus.subscribe("svc-a", [PATTERN], processor)
    held = ping(1)
    await bus.publish([(topic_of(held), held)])
    await eventually(lambda: seen == [1])
    later = [ping(2), ping(3)]
    assert await bus.publish([(topic_of(e), e) for e in later]) == [True, True]
    await eventually(lambda: seen.count(1) == 2, timeout=5)
    assert sorted(seen) == [1, 1, 2, 3]


async def test_an_event_the_broker_refuses_is_reported_unconfirmed(processes: Processes) -> None:
    bus = await processes.start()
    async with await aio_pika.connect(processes.url) as spy:
        channel = await spy.channel()
        full = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(bus.exchange_name, routing_key="#")
        event = ping(1)
        assert await bus.publish([(topic_of(event), event)]) == [False]  # nacked: retried later


async def test_publishing_while_the_broker_is_away_fails_cleanly_then_recovers(
    processes: Processes,
) -> None:
    target = urlparse(processes.url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.open()
    credentials = target.netloc.rpartition("@")[0]
    via_proxy = target._replace(
        netloc=f"{credentials}@127.0.0.1:{proxy.port}", query="reconnect_interval=0.3"
    ).geturl()
    try:
        bus = await processes.start(via_proxy, timeout=3.0)
        await bus.ping()
        await proxy.cut()
        await eventually(lambda: _unavailable(bus))
        events = [ping(n) for n in range(3)]
        batch = [(topic_of(e), e) for e in events]
        assert await asyncio.wait_for(bus.publish(batch), 10) == [False, False, False]
        with pytest.raises(ConnectionError):
            await bus.ping()

        await proxy.open()
        await eventually(lambda: _available(bus), timeout=15)
        assert await asyncio.wait_for(bus.publish(batch), 10) == [True, True, True]
    finally:
        await proxy.close()


async def _unavailable(bus: RabbitBus) -> bool:
    return not await _available(bus)


async def _available(bus: RabbitBus) -> bool:
    try:
        await bus.ping()
    except ConnectionError:
        return False
    return True


async def test_an_unreachable_broker_is_a_clear_error(rabbitmq_url: str) -> None:
    target = urlparse(rabbitmq_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.open()
    port = proxy.port
    await proxy.close()  # nothing listens there now
    bus = RabbitBus(f"amqp://guest:secret@127.0.0.1:{port}/", timeout=3.0)
    with pytest.raises(ConnectionError, match="cannot reach RabbitMQ") as caught:
        await asyncio.wait_for(bus.connect(), 10)
    assert "secret" not in str(caught.value)
    assert await bus.publish([(topic_of(e), e) for e in [ping()]]) == [False]
    with pytest.raises(ConnectionError):
        await bus.ping()


async def test_bad_subscriptions_and_conflicting_queues_are_refused(
    processes: Processes,
) -> None:
    bus = await processes.start()
    with pytest.raises(ValueError, match="patterns"):
        await bus.subscribe("svc-a", [], Recorder())
    with pytest.raises(ValueError, match="batch_size"):
        await bus.subscribe("svc-a", [PATTERN], Recorder(), batch_size=0)
    async with await aio_pika.connect(processes.url) as other:
        channel = await other.channel()
        await channel.declare_queue(
            bus.queue_name("svc-a"), durable=True, arguments={"x-queue-type": "quorum"}
        )
    with pytest.raises(RuntimeError, match="exists with other arguments"):
        await bus.subscribe("svc-a", [PATTERN], Recorder())
    await bus.ping()  # the refused declaration closed only its own channel
