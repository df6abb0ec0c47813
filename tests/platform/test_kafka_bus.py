"""What only the Kafka adapter does: topics per event type, the CloudEvents Kafka binding
(``ce_`` headers, the subject as the key), per-aggregate order through retries, the status
filter, commits after the processor, the idempotence setting."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer

from mercato.platform.bus.factory import create_bus
from mercato.platform.bus.kafka import (
    KafkaBus,
    bootstrap_servers,
    kafka_topic,
    subscription_of,
)
from mercato.platform.bus.port import RawMessage, Retry, Verdict, pattern_for, topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.settings import Settings
from tests.conftest import KAFKA_IDEMPOTENCE, eventually


def test_a_topic_per_event_type_and_patterns_become_subscriptions() -> None:
    assert kafka_topic("ns", "order.OrderStatusChanged.PAID") == "ns.OrderStatusChanged"
    assert kafka_topic("ns", "catalog.ProductCreated") == "ns.ProductCreated"
    patterns = ["*.OrderCreated", "*.OrderStatusChanged.RESERVED"]
    assert subscription_of("ns", patterns, "svc") == (
        ["ns.OrderCreated", "ns.OrderStatusChanged", "ns.direct.svc"],
        None,
    )
    topics, regex = subscription_of("ns", ["*.OrderCreated", "#"], "log")
    assert topics == ["ns.direct.log"] and regex is not None
    assert all(re.fullmatch(regex, t) for t in ("ns.OrderCreated", "ns.direct.log"))
    assert not any(re.fullmatch(regex, t) for t in ("ns.direct.svc", "other.OrderCreated"))
    for bad in ("order", "order.*", "order..Paid", "order.Paid Now"):
        with pytest.raises(ValueError, match="invalid topic"):
            kafka_topic("ns", bad)


def test_kafka_urls_and_settings() -> None:
    assert bootstrap_servers(["kafka://h1:9093", "kafka://h2"]) == ["h1:9093", "h2:9092"]
    settings = Settings(broker_url="kafka://h1:9092,h2:9092", kafka_idempotence=False)
    bus = create_bus(settings)
    assert isinstance(bus, KafkaBus)
    assert bus.servers == ["h1:9092", "h2:9092"] and bus.idempotence is False
    assert KafkaBus("kafka://h:1").idempotence is True  # on unless told
    assert Settings(broker_url="kafka://h:1").kafka_partitions == 3


@pytest.fixture
async def bus(kafka_url: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(
        kafka_url, namespace=f"mtest{uuid.uuid4().hex[:8]}", idempotence=KAFKA_IDEMPOTENCE
    )
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.delete_namespace()
        await bus.close()


async def test_events_travel_in_the_cloudevents_kafka_binding_keyed_by_subject(
    bus: KafkaBus,
) -> None:
    event = Envelope(
        type="OrderCreated", source="mercato/order", subject="o-1", data={"orderId": "o-1"}
    )
    assert await bus.publish([(topic_of(event), event)]) == [True]
    reader = AIOKafkaConsumer(
        kafka_topic(bus.namespace, topic_of(event)),
        bootstrap_servers=bus.servers,
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        record = await asyncio.wait_for(reader.getone(), 20)
    finally:
        await reader.stop()
    headers = {name: value.decode() for name, value in record.headers}
    assert record.key == b"o-1" and record.value == b'{"orderId":"o-1"}'
    assert headers["ce_id"] == event.id and headers["ce_type"] == "OrderCreated"
    assert headers["ce_specversion"] == "1.0" and headers["ce_source"] == "mercato/order"
    assert headers["ce_partitionkey"] == "o-1" and headers["content-type"] == "application/json"
    assert headers["mercato_topic"] == "order.OrderCreated"
    assert Envelope.from_binary(headers, record.value, "ce_").id == event.id


async def test_a_retry_holds_its_partition_and_comes_back_after_its_delay(
    bus: KafkaBus,
) -> None:
    """A Retry holds the message's partition: after the delay it is handed over again (attempt
    2), then what followed it in that partition (again: the inbox skips what it handled)."""
    handed: list[tuple[int, int, float]] = []  # (n, attempt, when)
    loop = asyncio.get_running_loop()

    async def processor(batch: Sequence[RawMessage]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for message in batch:
            n = Envelope.from_binary(message.headers, message.body, message.prefix).data["n"]
            handed.append((n, message.attempt, loop.time()))
            verdicts.append(Retry(0.5) if n == 1 and message.attempt == 1 else None)
        return verdicts

    await bus.subscribe("svc-a", [pattern_for("Pinged")], processor, batch_size=50)
    events = [
        Envelope(type="Pinged", source="mercato/p", subject="o-1", data={"pingId": "x", "n": n})
        for n in range(4)
    ]
    assert await bus.publish([(topic_of(e), e) for e in events]) == [True] * 4
    await eventually(lambda: (1, 2) in [(n, a) for n, a, _ in handed], 30)
    await eventually(lambda: [n for n, _, _ in handed][-3:] == [1, 2, 3], 10)
    first = next(t for n, a, t in handed if n == 1 and a == 1)
    again = next(t for n, a, t in handed if n == 1 and a == 2)
    assert again - first >= 0.45, handed
    assert [n for n, _, _ in handed].count(0) == 1, "nothing before the retry comes again"


async def test_a_group_bound_to_one_status_is_handed_only_that_status(bus: KafkaBus) -> None:
    handed: list[str] = []

    async def processor(batch: Sequence[RawMessage]) -> list[Verdict]:
        handed.extend(m.topic for m in batch)
        return [None] * len(batch)

    await bus.subscribe(
        "shipping", [pattern_for("OrderStatusChanged", "RESERVED")], processor, batch_size=10
    )
    events = [
        Envelope(
            type="OrderStatusChanged",
            source="mercato/order",
            subject=f"o-{i}",
            data={"orderId": f"o-{i}", "status": status},
        )
        for i, status in enumerate(["PAID", "RESERVED", "DELIVERING", "RESERVED"])
    ]
    assert await bus.publish([(topic_of(e), e) for e in events]) == [True] * 4
    await eventually(lambda: len(handed) >= 2, 30)
    await asyncio.sleep(1.0)
    assert handed == ["order.OrderStatusChanged.RESERVED"] * 2


async def test_offsets_are_committed_only_after_the_processor_returns(kafka_url: str) -> None:
    """A member stopped while its batch is in the processor commits nothing it did not finish:
    the next member of the group is handed the same messages."""
    namespace = f"mtest{uuid.uuid4().hex[:8]}"
    first = KafkaBus(kafka_url, namespace=namespace, idempotence=KAFKA_IDEMPOTENCE)
    await first.connect()
    entered, release = asyncio.Event(), asyncio.Event()
    handed_first: list[str] = []

    async def stuck(batch: Sequence[RawMessage]) -> list[Verdict]:
        handed_first.extend(m.headers["ce_id"] for m in batch)
        entered.set()
        await release.wait()
        return [Retry(0.0)] * len(batch)  # the batch did not commit (as a rollback)

    events = [
        Envelope(type="Pinged", source="mercato/p", subject="o-1", data={"pingId": "x", "n": n})
        for n in range(3)
    ]
    try:
        sub = await first.subscribe("svc-a", [pattern_for("Pinged")], stuck)
        assert await first.publish([(topic_of(e), e) for e in events]) == [True] * 3
        await asyncio.wait_for(entered.wait(), 30)
        release.set()
        await sub.stop()

        second = KafkaBus(kafka_url, namespace=namespace, idempotence=KAFKA_IDEMPOTENCE)
        await second.connect()
        handed_second: list[str] = []

        async def fine(batch: Sequence[RawMessage]) -> list[Verdict]:
            handed_second.extend(m.headers["ce_id"] for m in batch)
            return [None] * len(batch)

        try:
            await second.subscribe("svc-a", [pattern_for("Pinged")], fine)
            await eventually(lambda: len(handed_second) >= 3, 30)
            assert handed_second[:3] == [e.id for e in events]
        finally:
            await second.close()
    finally:
        await first.delete_namespace()
        await first.close()


async def test_an_idempotent_producer_on_a_broker_without_it_fails_naming_the_setting(
    kafka_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    if KAFKA_IDEMPOTENCE:
        pytest.skip("this broker has idempotent producers")
    bus = KafkaBus(kafka_url, namespace=f"mtest{uuid.uuid4().hex[:8]}", timeout=5.0)
    try:
        await bus.connect()
    except ConnectionError as exc:  # a client that asks at start
        assert "cannot reach Kafka" in str(exc)
        return
    try:
        event = Envelope(type="Pinged", source="mercato/p", data={"pingId": "x"})
        assert await bus.publish([(topic_of(event), event)]) == [False]
    finally:
        await bus.delete_namespace()
        await bus.close()
