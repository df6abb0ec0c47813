"""The in-process bus's consumer: it waits for messages in its own task, and stopping it —
waiting or in the middle of a batch — takes no message it does not finish."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mercato.platform.bus.memory import MemoryBus
from mercato.platform.bus.port import ACK, RawMessage, Verdict
from mercato.platform.envelope import Envelope


def event(n: int) -> tuple[str, Envelope]:
    return "pinger.Pinged", Envelope(type="Pinged", source="mercato/pinger", data={"n": n})


async def test_a_waiting_consumer_stops_at_once_and_later_events_stay_unconfirmed() -> None:
    bus = MemoryBus()
    seen: list[bytes] = []

    async def handle(batch: Sequence[RawMessage]) -> list[Verdict]:
        seen.extend(m.body for m in batch)
        return [ACK] * len(batch)

    subscription = await bus.subscribe("svc", ["*.Pinged"], handle)
    assert await bus.publish([event(1)]) == [True]
    await asyncio.wait_for(subscription.stop(), 1)  # it was waiting for the next message
    assert await bus.publish([event(2)]) == [False]  # kept in the outbox, for a later start
    assert seen == [b'{"n":1}']
    await bus.close()


async def test_stopping_mid_batch_lets_the_batch_finish() -> None:
    bus = MemoryBus()
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[bytes] = []

    async def handle(batch: Sequence[RawMessage]) -> list[Verdict]:
        started.set()
        await release.wait()
        seen.extend(m.body for m in batch)
        return [ACK] * len(batch)

    subscription = await bus.subscribe("svc", ["*.Pinged"], handle)
    publishing = asyncio.create_task(bus.publish([event(1)]))
    await started.wait()
    stopping = asyncio.create_task(subscription.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the batch in hand is not cut off
    release.set()
    await asyncio.wait_for(stopping, 1)
    assert await publishing == [True] and seen == [b'{"n":1}']
    await bus.close()
