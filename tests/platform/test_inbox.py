"""The inbox: an event's effects and "processed by this consumer" commit together, so a
redelivered event is acknowledged without a second effect — on SQLite and on PostgreSQL.

The effects are the demo tally's real tables (tests/demo), written by its real handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from mercato.contracts.events import Payload
from mercato.platform.bus.port import ACK
from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.platform.inbox import InboxConsumer, RetryPolicy, every
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import UnitOfWork
from tests.demo import tally
from tests.demo.probe import (
    arrivals,
    count_of,
    entry_event,
    freeze,
    inbox_count,
    raw,
    service_engine,
    thaw,
)


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_template") if request.param == "postgres" else None


@pytest.fixture
async def engine(template: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    engine = await service_engine(template, "tally", tmp_path)
    yield engine
    await engine.dispose()


def consumer(engine: Database) -> InboxConsumer:
    return InboxConsumer("tally", engine, tally.service.handlers, policy=RetryPolicy(3, 0.01))


async def test_the_same_event_delivered_three_times_takes_effect_once(
    engine: Database,
) -> None:
    tally_consumer = consumer(engine)
    event = entry_event("acc-1", amount="12.50")
    for _ in range(3):
        assert await tally_consumer([raw(event)]) == [ACK], "a duplicate is acknowledged"
    assert await count_of(engine, "acc-1") == 1
    assert await arrivals(engine, "acc-1") == [(event.data["entryId"], 1)]
    assert await inbox_count(engine, "tally", event.id) == 1


async def test_three_copies_in_one_batch_take_effect_once(engine: Database) -> None:
    event, other = entry_event("acc-1"), entry_event("acc-1", n=2)
    batch = [raw(event), raw(event, AMQP_PREFIX), raw(other), raw(event)]
    assert await consumer(engine)(batch) == [ACK] * 4
    assert [n for _, n in await arrivals(engine, "acc-1")] == [1, 2]
    assert await count_of(engine, "acc-1") == 2


async def test_prefetch_sees_each_new_event_of_a_batch_once_before_its_handlers(
    engine: Database,
) -> None:
    """A service's prefetch is handed the batch's events not handled before (no duplicates,
    no event already recorded), in the batch's transaction, before any handler runs."""
    seen: list[list[str]] = []
    counts_then: list[int] = []

    async def prefetch(uow: UnitOfWork, payloads: Sequence[Payload]) -> None:
        seen.append([p.entryId for p in payloads])  # type: ignore[attr-defined]
        counts_then.append(await count_of(engine, "acc-1"))

    def with_prefetch() -> InboxConsumer:
        handlers = tally.service.handlers
        return InboxConsumer(
            "tally", engine, handlers, policy=RetryPolicy(3, 0.01), prefetch=prefetch
        )

    handled, first, second = (entry_event("acc-1", n=n) for n in (1, 2, 3))
    assert await with_prefetch()([raw(handled)]) == [ACK]
    seen.clear()
    counts_then.clear()
    batch = [raw(handled), raw(first), raw(first, AMQP_PREFIX), raw(second)]
    assert await with_prefetch()(batch) == [ACK] * 4
    assert seen == [[first.data["entryId"], second.data["entryId"]]]
    assert counts_then == [1], "before the batch's handlers"
    assert await count_of(engine, "acc-1") == 3
    assert await with_prefetch()([raw(second)]) == [ACK]
    assert len(seen) == 1, "a batch of duplicates only: nothing to prefetch"


async def test_a_failed_batch_is_retried_one_by_one_without_doubling_the_others(
    engine: Database,
) -> None:
    await freeze(engine, "acc-frozen")
    good, bad, late = entry_event("acc-1"), entry_event("acc-frozen"), entry_event("acc-1", n=2)
    verdicts = await consumer(engine)([raw(good), raw(bad), raw(late)])
    assert verdicts[0] is ACK and verdicts[2] is ACK and verdicts[1] is not ACK
    assert await count_of(engine, "acc-1") == 2 and await count_of(engine, "acc-frozen") == 0
    assert await inbox_count(engine, "tally", bad.id) == 0, "a failure leaves no inbox row"
    await thaw(engine, "acc-frozen")
    assert await consumer(engine)([raw(good), raw(bad), raw(late)]) == [ACK] * 3
    assert await count_of(engine, "acc-1") == 2 and await count_of(engine, "acc-frozen") == 1


async def test_two_replicas_handling_one_event_at_once_take_effect_once(
    engine: Database, template: str | None, tmp_path: Path
) -> None:
    """Two consumers of one service (own engines, as two processes) get the same event together.

    The handler pauses inside its transaction, so both hold the event at the same time; the
    second one's inbox insert waits for the first to commit, then finds the row and skips.
    """
    other_engine = open_database(service_url(template, "tally", tmp_path))
    try:
        event = entry_event("acc-race", pause=0.3)
        verdicts = await asyncio.gather(
            consumer(engine)([raw(event)]), consumer(other_engine)([raw(event)])
        )
    finally:
        await other_engine.dispose()
    assert list(verdicts) == [[ACK], [ACK]]
    assert await count_of(engine, "acc-race") == 1
    assert len(await arrivals(engine, "acc-race")) == 1
    assert await inbox_count(engine, "tally", event.id) == 1


async def test_consumers_keep_separate_records_of_one_event(engine: Database) -> None:
    """The inbox is per consumer: the same event id is news to a second consumer."""
    event = entry_event("acc-1")
    mirror = InboxConsumer("mirror", engine, tally.mirror.handlers)
    assert await consumer(engine)([raw(event)]) == [ACK]
    assert await mirror([raw(event)]) == [ACK]
    assert await inbox_count(engine, "tally", event.id) == 1
    assert await inbox_count(engine, "mirror", event.id) == 1
    assert await count_of(engine, "acc-1") == 2, "both consumers' effects, one each"


async def test_events_no_every_handler_wants_are_acknowledged_before_any_transaction(
    engine: Database,
) -> None:
    """An ``every`` handler with an interest (webhooks: its subscriptions) is asked once per
    batch; the events it does not want leave no inbox row and reach no handler; if it cannot
    say (its database is down), every event goes through the transaction as usual."""
    wanted, handled, asked = {"acc-2"}, [], []
    down = False

    async def interest(db: Database) -> Callable[[Envelope], bool]:
        asked.append(db)
        if down:
            raise ConnectionError("database down")
        return lambda e: e.subject in wanted

    async def keep(events: Sequence[Envelope], uow: UnitOfWork) -> None:
        handled.extend(e.id for e in events)

    consumer = InboxConsumer("hooks", engine, [every(keep, interest=interest)])
    one, two, three = entry_event("acc-1"), entry_event("acc-2"), entry_event("acc-3")
    assert await consumer([raw(one), raw(two), raw(three)]) == [ACK] * 3
    assert handled == [two.id] and len(asked) == 1
    assert [await inbox_count(engine, "hooks", e.id) for e in (one, two, three)] == [0, 1, 0]
    wanted.add("acc-1")  # now wanted: a redelivery is asked about again
    assert await consumer([raw(one)]) == [ACK]
    assert handled == [two.id, one.id]
    down = True
    assert await consumer([raw(three)]) == [ACK]
    assert handled == [two.id, one.id, three.id]
