"""The port's two ways past per-type bindings, on every bus: one wildcard subscription that
gets every event (``every``, the audit log's), and ``send`` to one consumer's queue alone (a
replay)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mercato.platform.bus.port import ALL_EVENTS, topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.inbox import InboxConsumer, every
from mercato.platform.unit_of_work import UnitOfWork
from tests.conftest import eventually
from tests.platform.test_bus_contract import BusWorld, ping, recorder
from tests.platform.test_bus_contract import world as world  # the fixture, every bus


def kinds() -> list[Envelope]:
    return [
        ping(1),
        Envelope(type="Other", source="mercato/pinger", data={"pingId": "o"}),
        Envelope(type="OrderStatusChanged", source="mercato/order", data={"status": "PAID"}),
        Envelope(type="NobodyKnowsMe", source="mercato/future", data={"x": 1}),
    ]


async def test_one_wildcard_subscription_gets_every_event_once(world: BusWorld) -> None:
    kept: list[str] = []

    async def keep(batch: Sequence[Envelope], uow: UnitOfWork) -> None:
        kept.extend(e.type for e in batch)

    consumer = InboxConsumer("log", await world.db("log"), [every(keep)])
    assert consumer.patterns == (ALL_EVENTS,)
    world.subscriptions.append(
        await (await world.bus()).subscribe("log", consumer.patterns, consumer)
    )
    events = kinds()
    await world.publish(*events)
    await eventually(lambda: len(kept) == 4)
    await world.publish(events[0])  # again: the inbox drops it
    await asyncio.sleep(0.3)
    assert sorted(kept) == sorted(e.type for e in events)
    assert await world.dead_letters("log") == []


async def test_send_reaches_one_consumer_and_no_other(world: BusWorld) -> None:
    seen_a, handle_a = recorder()
    seen_b, handle_b = recorder()
    await world.consume("svc-a", handle_a)
    await world.consume("svc-b", handle_b)
    event = ping(7)
    bus = world.buses[0]
    assert await asyncio.wait_for(bus.send("svc-a", [(topic_of(event), event)]), 20) == [True]
    await eventually(lambda: len(seen_a) == 1)
    await asyncio.sleep(0.3)
    assert seen_b == [] and seen_a[0].n == 7
    # Sent again: the inbox acknowledges it without a second effect.
    assert await bus.send("svc-a", [(topic_of(event), event)]) == [True]
    await asyncio.sleep(0.3)
    assert len(seen_a) == 1


async def test_send_to_a_consumer_that_never_subscribed_is_refused(world: BusWorld) -> None:
    bus = await world.bus()
    event = ping()
    with pytest.raises(LookupError):
        await bus.send("nobody-here", [(topic_of(event), event)])
