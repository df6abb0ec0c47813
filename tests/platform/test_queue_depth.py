"""``queue_depth``: what each bus tells of the messages waiting for a consumer, which
``/metrics`` shows as ``mercato_consumer_queue_depth`` (RabbitMQ's ready messages, NATS's
pending, the in-process queue)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from mercato.platform.bus.memory import MemoryBus
from mercato.platform.bus.port import RawMessage, Verdict, pattern_for, topic_of
from tests.conftest import eventually
from tests.demo.probe import broker_bus, drop_namespace, entry_event


@pytest.fixture(params=["rabbitmq", "nats"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_a_stopped_consumers_queue_depth_counts_what_waits_for_it(broker: str) -> None:
    """On a broker: the consumer stopped, three events published wait in its queue. (The
    in-process bus refuses events for a stopped consumer: the test below.)"""
    namespace = f"otel{uuid.uuid4().hex[:8]}"
    bus = broker_bus(broker, namespace)
    await bus.connect()
    depth: Any = bus.queue_depth  # type: ignore[attr-defined]
    taken: list[RawMessage] = []

    async def take(batch: Sequence[RawMessage]) -> list[Verdict]:
        taken.extend(batch)
        return [None] * len(batch)

    try:
        assert await depth("tally") is None, "no such consumer yet"
        first = entry_event("acc-1")
        subscription = await bus.subscribe("tally", [pattern_for("EntryRecorded")], take)
        assert await bus.publish([(topic_of(first), first)]) == [True]
        await eventually(lambda: len(taken) == 1)
        await subscription.stop()
        events = [entry_event("acc-1", n) for n in range(2, 5)]
        assert await bus.publish([(topic_of(e), e) for e in events]) == [True] * 3

        async def three_waiting() -> bool:
            return bool(await depth("tally") == 3)

        await eventually(three_waiting, timeout=10)
    finally:
        await bus.close()
        await drop_namespace(broker, namespace, ["tally"])


async def test_the_in_process_queue_depth_counts_what_waits_behind_the_batch_in_hand() -> None:
    bus = MemoryBus()
    await bus.connect()
    release = asyncio.Event()

    async def hold(batch: Sequence[RawMessage]) -> list[Verdict]:
        await release.wait()
        return [None] * len(batch)

    assert await bus.queue_depth("tally") is None
    subscription = await bus.subscribe("tally", [pattern_for("EntryRecorded")], hold, batch_size=1)
    events = [entry_event("acc-1", n) for n in range(1, 5)]
    publishing = [asyncio.ensure_future(bus.publish([(topic_of(e), e)])) for e in events]

    async def three_waiting() -> bool:
        return await bus.queue_depth("tally") == 3

    await eventually(three_waiting)
    release.set()
    assert [await p for p in publishing] == [[True]] * 4
    assert await bus.queue_depth("tally") == 0
    await subscription.stop()
    await bus.close()
