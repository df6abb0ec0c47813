"""One contract, four buses: the same tests run against in-process, RabbitMQ, NATS and Kafka.

Each test drives the real consumer stack (InboxConsumer on a SQLite database) through a bus,
so what is pinned is what a service sees: delivery, fan-out, competing consumers, redelivery
after a failure, dead-lettering after the retry limit, poison messages.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mercato.contracts.events import Payload
from mercato.platform.bus.port import (
    EventBus,
    RawMessage,
    Subscription,
    Verdict,
    pattern_for,
    topic_of,
)
from mercato.platform.dead_letters import list_dead_letters, readable
from mercato.platform.envelope import Envelope
from mercato.platform.inbox import InboxConsumer, RetryPolicy, on
from mercato.platform.storage.database import ensure_database, open_database, service_url
from mercato.platform.storage.migrate import migrate
from mercato.platform.storage.sql import Database
from mercato.platform.storage.tables import dead_letters
from mercato.platform.unit_of_work import UnitOfWork
from tests.conftest import eventually


class Pinged(Payload):
    pingId: str
    n: int = 0


class Other(Payload):
    pingId: str


def ping(n: int = 0, ping_id: str | None = None) -> Envelope:
    return Envelope(
        type="Pinged", source="mercato/pinger", data={"pingId": ping_id or uuid.uuid4().hex, "n": n}
    )


class BusWorld:
    """Buses (one per simulated process), consumers with their own databases, and cleanup."""

    def __init__(self, kind: str, url: str | None, tmp: Path, template: str | None = None):
        self.kind = kind
        self.url = url
        self.tmp = tmp
        self.template = template  # the consumers' databases: SQLite files unless PostgreSQL's
        self.deliveries: Counter[str] = Counter()  # messages handed to each consumer
        self.batches: dict[str, list[int]] = {}  # the size of each batch, by consumer
        self.namespace = f"mtest{uuid.uuid4().hex[:8]}"
        self.buses: list[EventBus] = []
        self.engines: dict[str, Database] = {}
        self.subscriptions: list[Subscription] = []

    async def bus(self) -> EventBus:
        if self.kind == "memory":
            if not self.buses:
                from mercato.platform.bus.memory import MemoryBus

                self.buses.append(MemoryBus())
            return self.buses[0]
        if self.kind == "rabbitmq":
            from mercato.platform.bus.rabbitmq import RabbitBus

            bus: EventBus = RabbitBus(self.url or "", namespace=self.namespace)
        elif self.kind == "kafka":
            from mercato.platform.bus.kafka import KafkaBus
            from tests.conftest import KAFKA_IDEMPOTENCE

            bus = KafkaBus(self.url or "", namespace=self.namespace, idempotence=KAFKA_IDEMPOTENCE)
        else:
            from mercato.platform.bus.nats import NatsBus

            bus = NatsBus(self.url or "", namespace=self.namespace)
        await bus.connect()
        self.buses.append(bus)
        return bus

    async def db(self, consumer: str) -> Database:
        if consumer not in self.engines:
            url = service_url(self.template, consumer, self.tmp)
            await ensure_database(url)
            engine = open_database(url)
            await migrate(engine, None)
            self.engines[consumer] = engine
        return self.engines[consumer]

    async def consume(
        self,
        consumer: str,
        handler: Callable[[Any, UnitOfWork], Any],
        *,
        bus: EventBus | None = None,
        max_attempts: int = 3,
        batch_size: int = 20,
        batch_wait: float = 0.0,
        model: type[Payload] = Pinged,
    ) -> InboxConsumer:
        processor = InboxConsumer(
            consumer,
            await self.db(consumer),
            [on(model, handler)],
            policy=RetryPolicy(max_attempts=max_attempts, base_delay=0.05),
        )
        bus = bus or await self.bus()

        async def counted(batch: Sequence[RawMessage]) -> list[Verdict]:
            self.deliveries[consumer] += len(batch)
            self.batches.setdefault(consumer, []).append(len(batch))
            return await processor(batch)

        self.subscriptions.append(
            await bus.subscribe(
                consumer,
                processor.patterns,
                counted,
                batch_size=batch_size,
                max_deliveries=max_attempts + 3,
                batch_wait=batch_wait,
            )
        )
        return processor

    async def publish(self, *envelopes: Envelope) -> None:
        bus = await self.bus() if not self.buses else self.buses[0]
        confirmed = await asyncio.wait_for(bus.publish([(topic_of(e), e) for e in envelopes]), 20)
        assert confirmed == [True] * len(envelopes)

    async def dead_letters(self, consumer: str) -> list[Any]:
        async with (await self.db(consumer)).connect() as conn:
            return list((await conn.execute(select(dead_letters))).all())

    async def close(self) -> None:
        for sub in self.subscriptions:
            await sub.stop()
        for bus in self.buses:
            destroy = getattr(bus, "delete_namespace", None)
            if destroy is not None:
                await destroy()
            await bus.close()
        for engine in self.engines.values():
            await engine.dispose()


@pytest.fixture(params=["memory", "rabbitmq", "nats", "kafka"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusWorld]:
    async with _world(request, request.param, None, tmp_path) as w:
        yield w


@pytest.fixture(params=["sqlite", "postgres"])
def consumer_db(request: pytest.FixtureRequest) -> str | None:
    """The consumers' databases: SQLite files, or PostgreSQL's (a template URL)."""
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


@pytest.fixture(params=["memory", "rabbitmq", "nats", "kafka"])
async def world_on_each_db(
    request: pytest.FixtureRequest, consumer_db: str | None, tmp_path: Path
) -> AsyncIterator[BusWorld]:
    """Every bus with the consumers' databases on SQLite and on PostgreSQL: what a database
    refuses to store matters for dead letters."""
    async with _world(request, request.param, consumer_db, tmp_path) as w:
        yield w


@asynccontextmanager
async def _world(
    request: pytest.FixtureRequest, kind: str, template: str | None, tmp: Path
) -> AsyncIterator[BusWorld]:
    url = None
    if kind == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_url")
    elif kind == "nats":
        url = request.getfixturevalue("nats_url")
    elif kind == "kafka":
        url = request.getfixturevalue("kafka_url")
    w = BusWorld(kind, url, tmp, template)
    try:
        yield w
    finally:
        await w.close()


def recorder() -> tuple[list[Pinged], Callable[[Pinged, UnitOfWork], Any]]:
    seen: list[Pinged] = []

    async def handle(event: Pinged, uow: UnitOfWork) -> None:
        seen.append(event)

    return seen, handle


async def test_published_events_are_consumed(world: BusWorld) -> None:
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    events = [ping(n) for n in range(5)]
    await world.publish(*events)
    await eventually(lambda: len(seen) == 5)
    assert sorted(e.n for e in seen) == [0, 1, 2, 3, 4]


async def test_a_batch_waits_for_what_comes_within_its_batch_wait(world: BusWorld) -> None:
    """Events published one by one within a consumer's ``batch_wait`` of the first reach it
    in one batch; a full batch goes at once. (The in-process bus does not wait: its publish
    is confirmed once the consumers have committed.)"""
    if world.kind == "memory":
        pytest.skip("the in-process bus hands over what is there")
    seen, handle = recorder()
    await world.consume("svc-a", handle, batch_size=4, batch_wait=3.0)
    for n in range(3):
        await world.publish(ping(n))
        await asyncio.sleep(0.1)
    await eventually(lambda: len(seen) == 3, timeout=10)
    assert world.batches["svc-a"] == [3]
    await world.publish(*(ping(n) for n in range(3, 7)))  # a full batch: no wait
    await eventually(lambda: len(seen) == 7, timeout=2.5)
    assert world.batches["svc-a"] == [3, 4]


async def test_a_batch_wait_out_of_bounds_is_refused(world: BusWorld) -> None:
    bus = await world.bus()
    for wait in (-1.0, float("nan"), 60.0):
        with pytest.raises(ValueError, match="batch_wait"):
            await bus.subscribe("svc-a", ["*.Pinged"], lambda b: [], batch_wait=wait)  # type: ignore[arg-type,return-value]


async def test_a_queue_receives_only_the_types_it_is_bound_to(world: BusWorld) -> None:
    seen, handle = recorder()
    other_seen: list[Other] = []

    async def handle_other(event: Other, uow: UnitOfWork) -> None:
        other_seen.append(event)

    await world.consume("svc-a", handle)
    await world.consume("svc-b", handle_other, model=Other)
    await world.publish(Envelope(type="Other", source="mercato/pinger", data={"pingId": "o"}))
    await world.publish(ping(1))
    await eventually(lambda: len(seen) == 1 and len(other_seen) == 1)
    await asyncio.sleep(0.2)
    assert [e.n for e in seen] == [1] and [e.pingId for e in other_seen] == ["o"]


async def test_an_event_no_queue_is_bound_to_is_confirmed_with_its_batch(
    world: BusWorld,
) -> None:
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    unbound = Envelope(type="Unheard", source="mercato/pinger", data={"pingId": "u"})
    await world.publish(ping(1), unbound, ping(2))  # asserts that all three are confirmed
    await eventually(lambda: len(seen) == 2)
    assert sorted(e.n for e in seen) == [1, 2]


async def test_every_service_gets_its_own_copy(world: BusWorld) -> None:
    seen_a, handle_a = recorder()
    seen_b, handle_b = recorder()
    await world.consume("svc-a", handle_a)
    await world.consume("svc-b", handle_b)
    await world.publish(*[ping(n) for n in range(4)])
    await eventually(lambda: len(seen_a) == 4 and len(seen_b) == 4)


async def test_replicas_of_one_service_compete_for_its_queue(world: BusWorld) -> None:
    handled_by: Counter[str] = Counter()
    ids: list[str] = []

    def replica(name: str) -> Callable[[Pinged, UnitOfWork], Any]:
        async def handle(event: Pinged, uow: UnitOfWork) -> None:
            handled_by[name] += 1
            ids.append(event.pingId)
            await asyncio.sleep(0.01)

        return handle

    await world.consume("svc-a", replica("one"), bus=await world.bus(), batch_size=1)
    second = await world.bus() if world.kind != "memory" else None
    await world.consume("svc-a", replica("two"), bus=second, batch_size=1)
    await world.publish(*[ping(n) for n in range(30)])
    await eventually(lambda: len(ids) >= 30)
    await asyncio.sleep(0.3)
    assert len(ids) == 30 and len(set(ids)) == 30, "each event handled once by the service"
    assert handled_by["one"] > 0 and handled_by["two"] > 0, handled_by


async def test_a_failed_handler_gets_the_event_again(world: BusWorld) -> None:
    attempts: Counter[str] = Counter()
    done: list[str] = []

    async def flaky(event: Pinged, uow: UnitOfWork) -> None:
        attempts[event.pingId] += 1
        if attempts[event.pingId] < 3:
            raise RuntimeError("warehouse database hiccup")
        done.append(event.pingId)

    await world.consume("svc-a", flaky, max_attempts=5)
    await world.publish(ping(ping_id="flaky"))
    await eventually(lambda: done == ["flaky"])
    assert attempts["flaky"] == 3
    assert await world.dead_letters("svc-a") == []


async def test_an_event_that_keeps_failing_is_dead_lettered_with_its_error(
    world: BusWorld,
) -> None:
    seen, handle = recorder()
    attempts: Counter[str] = Counter()

    async def broken(event: Pinged, uow: UnitOfWork) -> None:
        attempts[event.pingId] += 1
        if event.pingId == "bad":
            raise ValueError("no such warehouse")
        await handle(event, uow)

    await world.consume("svc-a", broken, max_attempts=3)
    await world.publish(ping(ping_id="bad"), ping(ping_id="good"))
    letters = await eventually(lambda: world.dead_letters("svc-a"))
    assert len(letters) == 1
    letter = letters[0]
    assert letter.event_type == "Pinged" and letter.attempts == 3 and letter.status == "dead"
    assert "ValueError: no such warehouse" in letter.error
    # Three deliveries; the first may also have been tried once inside a failed batch.
    assert 3 <= attempts["bad"] <= 4
    await eventually(lambda: [e.pingId for e in seen] == ["good"])


async def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(
    world: BusWorld,
) -> None:
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    bus = world.buses[0]
    topic = topic_of(ping())
    await bus.publish_raw(topic, {"ce-type": "Pinged"}, b"\xff not json at all")
    await bus.publish_raw(
        topic,
        {**ping().to_binary(bus.prefix)[0]},  # type: ignore[attr-defined]
        b'{"pingId": 42}',
    )
    await world.publish(ping(7))
    await eventually(lambda: [e.n for e in seen] == [7])
    letters = await eventually(lambda: _at_least(world.dead_letters("svc-a"), 2))
    errors = sorted(letter.error for letter in letters)
    assert any("malformed event" in e for e in errors), errors
    assert any("invalid Pinged payload" in e and "pingId" in e for e in errors), errors
    assert all(letter.attempts == 1 for letter in letters), "poison is not retried"


async def test_a_message_with_a_nul_byte_is_one_listed_dead_letter_and_not_redelivered(
    world_on_each_db: BusWorld,
) -> None:
    """PostgreSQL's TEXT refuses NUL: the letter keeps the body's bytes, escapes the rest."""
    world = world_on_each_db
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    bus = world.buses[0]
    prefix: str = bus.prefix  # type: ignore[attr-defined]
    nul_body = b'{"pingId": "a\x00b"}'  # a raw NUL: not JSON either
    await bus.publish_raw(topic_of(ping()), ping().to_binary(prefix)[0], nul_body)
    nul_id = ping()
    headers = {**nul_id.to_binary(prefix)[0], f"{prefix}id": "id-\x00-1"}
    await bus.publish_raw(topic_of(nul_id), headers, nul_id.to_binary(prefix)[1])
    await world.publish(ping(7))

    # The other one's id cannot be an inbox key on PostgreSQL (retried, then a dead letter,
    # its id escaped); SQLite takes it.
    on_postgres = world.template is not None
    letters = await _settled_letters(world, "svc-a", 2 if on_postgres else 1)
    await eventually(lambda: 7 in [e.n for e in seen])
    by_body = {bytes(letter.body): letter for letter in letters}
    assert "body is not JSON" in by_body[nul_body].error
    assert by_body[nul_body].attempts == 1
    assert readable(bytes(by_body[nul_body].body)) == '{"pingId": "a\\x00b"}'
    escaped_id = [letter for letter in letters if letter.event_id == "id-\\x00-1"]
    assert len(escaped_id) == on_postgres
    listed = await list_dead_letters(await world.db("svc-a"))
    assert sorted(r.id for r in listed) == sorted(r.id for r in letters)


async def test_an_event_of_an_unknown_type_is_one_listed_dead_letter(
    world_on_each_db: BusWorld,
) -> None:
    """The queue is bound to the handled types, so an unknown one comes from a publisher newer
    than the consumer, or by mistake: a dead letter an operator sees, not a silent drop."""
    world = world_on_each_db
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    bus = world.buses[0]
    prefix: str = bus.prefix  # type: ignore[attr-defined]
    newer = Envelope(type="PingedTwice", source="mercato/pinger", data={"pingId": "p2"})
    headers, body = newer.to_binary(prefix)
    await bus.publish_raw(topic_of(ping()), headers, body)  # on a topic the queue is bound to
    await world.publish(ping(3))

    [letter] = await _settled_letters(world, "svc-a", 1)
    await eventually(lambda: [e.n for e in seen] == [3])
    assert (letter.event_type, letter.event_id, letter.attempts) == ("PingedTwice", newer.id, 1)
    assert "unknown event type 'PingedTwice'" in letter.error
    assert [r.id for r in await list_dead_letters(await world.db("svc-a"))] == [letter.id]


async def _settled_letters(world: BusWorld, consumer: str, count: int) -> list[Any]:
    """The consumer's dead letters once there are ``count`` and deliveries have stopped (no
    message comes back for ever)."""
    letters = await eventually(lambda: _at_least(world.dead_letters(consumer), count), 30)
    for _ in range(10):
        delivered = world.deliveries[consumer]
        await asyncio.sleep(1.0)
        if world.deliveries[consumer] == delivered:
            break
    else:
        raise AssertionError(f"{consumer} is still handed messages: {world.deliveries}")
    letters = await world.dead_letters(consumer)
    assert len(letters) == count, letters
    return letters


async def test_the_same_event_delivered_three_times_takes_effect_once(world: BusWorld) -> None:
    seen, handle = recorder()
    await world.consume("svc-a", handle)
    event = ping(1)
    for _ in range(3):
        await world.publish(event)
    await world.publish(ping(2))
    await eventually(lambda: len(seen) == 2)
    await asyncio.sleep(0.2)
    assert sorted(e.n for e in seen) == [1, 2]


async def _at_least(rows: Any, n: int) -> Any:
    found = await rows
    return found if len(found) >= n else None


def test_patterns_bind_one_route_value() -> None:
    from mercato.platform.bus.port import topic_matches

    assert pattern_for("OrderStatusChanged", "RESERVED") == "*.OrderStatusChanged.RESERVED"
    assert topic_matches("*.OrderStatusChanged.RESERVED", "order.OrderStatusChanged.RESERVED")
    assert not topic_matches("*.OrderStatusChanged.RESERVED", "order.OrderStatusChanged.PAID")
    assert topic_matches("#", "catalog.ProductCreated")
    assert not topic_matches("*.ProductCreated", "catalog.ProductUpdated")
    with pytest.raises(ValueError):
        pattern_for("ProductCreated", "x")
