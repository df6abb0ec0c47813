"""Two replicas of webhooks on one database (SQLite file, PostgreSQL), each with its own
consumer and delivery worker, as ``mercato serve webhooks`` twice runs them: events consumed by
both at once, every delivery sent once, each subject's in its events' order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.contracts.events import StockUpdated
from mercato.platform.bus.port import RawMessage
from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.services.webhooks import store
from mercato.services.webhooks.delivery import Sender, deliver_webhooks
from mercato.services.webhooks.service import service as webhooks
from mercato.services.webhooks.tables import attempts, deliveries
from tests.conftest import eventually
from tests.services.replicas import Replicas, message, replicas
from tests.services.webhooks.receiver import Receiver
from tests.support import test_settings as make_settings

SUBJECTS = 8
PER_SUBJECT = 5


@pytest.fixture(params=["sqlite", "postgres"])
def template(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_template"))
    return f"sqlite:///{tmp_path}/{{service}}.db"


@pytest.fixture
async def two(template: str) -> AsyncIterator[Replicas]:
    async with replicas(webhooks, template) as found:
        yield found


def order_event(subject: str, n: int, at: datetime) -> RawMessage:
    envelope = Envelope(
        type="OrderStatusChanged",
        source="mercato/order",
        data={"orderId": subject, "status": f"S{n}", "previousStatus": f"S{n - 1}"},
        subject=subject,
        time=at,
    )
    headers, body = envelope.to_binary(AMQP_PREFIX)
    return RawMessage(topic="t", headers=headers, body=body, prefix=AMQP_PREFIX)


async def test_two_replicas_consume_and_send_each_delivery_once_in_order(
    two: Replicas, tmp_path: Path
) -> None:
    receiver = Receiver(delay=0.01)
    await receiver.start()
    settings = make_settings(
        tmp_path,
        webhook_allow_private_targets=True,
        webhook_poll_interval=0.02,
        webhook_endpoint_concurrency=8,
        webhook_order_settle=3.0,  # the events are made before both replicas handle them
    )
    async with two.first.db.begin() as conn:
        await store.add_subscription(conn, receiver.url, ["*"], None, True, "", "whsec_" + "A" * 32)
    start = datetime.now(UTC)
    events = [
        order_event(f"o-{s}", n, start + timedelta(milliseconds=n * 10 + s))
        for n in range(PER_SUBJECT)
        for s in range(SUBJECTS)
    ]
    # Each replica consumes every other event of each subject, latest first: the later events
    # of a subject may be committed first, and the workers still send them after the earlier.
    halves = [
        [e for n, e in reversed(list(enumerate(events))) if n // SUBJECTS % 2 == half]
        for half in (0, 1)
    ]
    workers = [
        asyncio.create_task(
            deliver_webhooks(ServiceContext(webhooks, settings, r.db, bus=None))  # type: ignore[arg-type]
        )
        for r in two.of
    ]
    try:
        verdicts = await asyncio.gather(
            *(r.handle(*half) for r, half in zip(two.of, halves, strict=True))
        )
        assert all(v is None for found in verdicts for v in found)
        total = SUBJECTS * PER_SUBJECT
        await eventually(lambda: len(receiver.received) >= total, timeout=20)
        await asyncio.sleep(0.3)  # nothing more comes
        ids = [r.webhook_id for r in receiver.received]
        assert len(ids) == total == len(set(ids)), "each delivery sent once"
        for s in range(SUBJECTS):
            sent = [e["data"]["status"] for e in receiver.events(f"o-{s}")]
            assert sent == [f"S{n}" for n in range(PER_SUBJECT)], sent
        async with two.first.db.connect() as conn:
            tried = await conn.scalar(select(func.count()).select_from(attempts))
            states = (await conn.execute(select(deliveries.c.status))).all()
        assert tried == total and {r.status for r in states} == {"delivered"}
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await receiver.stop()


async def test_one_delivery_claimed_by_two_replicas_at_once_goes_to_one(two: Replicas) -> None:
    async with two.first.db.begin() as conn:
        made = await store.add_subscription(
            conn, "http://127.0.0.1:9/h", ["*"], None, True, "", "whsec_" + "A" * 32
        )
    assert await two.first.handle(order_event("o-1", 1, datetime.now(UTC))) == [None]
    now = datetime.now(UTC)

    async def claim(db: object, owner: str) -> list[str]:
        async with db.begin() as conn:  # type: ignore[attr-defined]
            return [o.id for o in await store.claim(conn, made, owner, now, 30, 10)]

    for _ in range(5):
        won = await asyncio.gather(*(claim(r.db, f"r{i}") for i, r in enumerate(two.of)))
        assert sorted(len(ids) for ids in won) == [0, 1], won
        async with two.first.db.begin() as conn:  # the lease runs out: claimable again
            await conn.execute(deliveries.update().values(lease_until=now - timedelta(1)))


async def test_failures_on_two_replicas_all_count_and_open_the_circuit(
    two: Replicas, tmp_path: Path
) -> None:
    receiver = Receiver(answer=500)
    await receiver.start()
    settings = make_settings(
        tmp_path,
        webhook_allow_private_targets=True,
        webhook_poll_interval=0.02,
        webhook_order_settle=0,
        webhook_retry_base=0.01,
        webhook_retry_max=0.02,
        webhook_breaker_failures=6,
        webhook_breaker_pause=60,
    )
    async with two.first.db.begin() as conn:
        made = await store.add_subscription(
            conn, receiver.url, ["*"], None, True, "", "whsec_" + "A" * 32
        )
    now = datetime.now(UTC)
    for r, s in zip(two.of, (1, 2), strict=True):
        assert await r.handle(order_event(f"o-{s}", 1, now)) == [None]
    workers = [
        asyncio.create_task(
            deliver_webhooks(ServiceContext(webhooks, settings, r.db, bus=None))  # type: ignore[arg-type]
        )
        for r in two.of
    ]

    async def paused() -> store.Subscription | None:
        async with two.first.db.connect() as conn:
            found = await store.subscription(conn, made.id)
        return found if found is not None and found.paused(datetime.now(UTC)) else None

    try:
        opened = await eventually(paused, timeout=20)
        await asyncio.sleep(0.3)  # what was in flight when it opened is recorded
        async with two.first.db.connect() as conn:
            tried = await conn.scalar(select(func.count()).select_from(attempts))
            found = await store.subscription(conn, made.id)
        assert found is not None and found.consecutive_failures == tried >= 6
        assert opened.failing_since is not None and opened.paused_until is not None
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await receiver.stop()


async def test_outcomes_recorded_together_move_each_delivery_and_the_circuit(
    two: Replicas,
) -> None:
    """One batch of outcomes (as the sender's recorder writes them): each delivery moves on, a
    delivery leased by another owner keeps its state (its attempt is on record), a success
    closes the circuit and only the failures after it count; failures alone add up."""
    made, sent = await claimed(two, 6)
    start = datetime.now(UTC) - timedelta(seconds=5)
    at = [start + timedelta(seconds=n) for n in range(6)]

    def outcome(n: int, code: int) -> store.Attempt:
        error = None if code == 200 else f"HTTP {code}"
        return store.Attempt(sent[n], store.Outcome(at[n], code, 5, error, ""), 60.0)

    async with two.first.db.begin() as conn:  # another owner took delivery 3 over
        await conn.execute(
            deliveries.update().where(deliveries.c.id == sent[3].id).values(lease_owner="other")
        )
    batch = [outcome(0, 500), outcome(1, 200), outcome(2, 503), outcome(3, 502)]
    async with two.first.db.begin() as conn:
        await store.record(conn, "me", batch, 3, 600)
    async with two.first.db.connect() as conn:
        states = {
            r.id: r
            for r in (
                await conn.execute(
                    select(
                        deliveries.c.id,
                        deliveries.c.status,
                        deliveries.c.attempt_count,
                        deliveries.c.lease_owner,
                        deliveries.c.next_attempt_at,
                    )
                )
            ).all()
        }
        tried = await conn.scalar(select(func.count()).select_from(attempts))
        circuit = await store.subscription(conn, made.id)
    assert tried == 4
    assert states[sent[1].id].status == "delivered"
    for n in (0, 2):
        row = states[sent[n].id]
        assert (row.status, row.attempt_count, row.lease_owner) == ("pending", 1, None)
        assert row.next_attempt_at == at[n] + timedelta(seconds=60)
    assert (states[sent[3].id].attempt_count, states[sent[3].id].lease_owner) == (0, "other")
    assert circuit is not None and circuit.consecutive_failures == 2  # 2 and 3, after 1's 200
    assert circuit.failing_since == at[2] and circuit.paused_until is None

    async with two.first.db.begin() as conn:  # failures alone add up and open it
        await store.record(conn, "me", [outcome(4, 500)], 3, 600)
    async with two.first.db.connect() as conn:
        circuit = await store.subscription(conn, made.id)
    assert circuit is not None and circuit.consecutive_failures == 3
    assert circuit.failing_since == at[2] and circuit.paused_until == at[4] + timedelta(seconds=600)


async def test_a_claim_rechecks_that_the_delivery_is_still_due(two: Replicas) -> None:
    """Found due, then (before the claim) its failed attempt recorded by another replica, with
    a retry time later: the claim leaves it until then."""
    async with two.first.db.begin() as conn:
        await store.add_subscription(
            conn, "http://127.0.0.1:9/h", ["*"], None, True, "", "whsec_" + "A" * 32
        )
    assert await two.first.handle(order_event("o-1", 1, datetime.now(UTC))) == [None]
    now = datetime.now(UTC)
    async with two.first.db.begin() as conn:
        (found,) = (await conn.execute(select(deliveries.c.id))).scalars()
        await conn.execute(deliveries.update().values(next_attempt_at=now + timedelta(seconds=60)))
        params = {"ids": [found], "now": now, "until": now + timedelta(seconds=30), "owner": "me"}
        assert (await conn.execute(store.CLAIM, params)).all() == []


async def test_delivered_deliveries_past_the_retention_go_with_their_attempts(
    two: Replicas,
) -> None:
    """Two replicas pruning at once, a few rows a transaction: the deliveries delivered before
    the cutoff and their attempts go, once; dead, pending and recent ones stay."""
    _, sent = await claimed(two, 9)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    fates = [(old, 200)] * 6 + [(recent, 200), (old, 500)]  # the ninth stays pending
    done = [
        store.Attempt(d, store.Outcome(at, code, 5, None if code == 200 else "HTTP 500", ""), None)
        for d, (at, code) in zip(sent, fates, strict=False)
    ]
    async with two.first.db.begin() as conn:
        await store.record(conn, "me", done, 100, 600)
    cutoff = now - timedelta(days=30)
    removed = await asyncio.gather(*(store.prune(r.db, cutoff, chunk=2) for r in two.of))
    assert sum(removed) == 6
    async with two.first.db.connect() as conn:
        left = dict((await conn.execute(select(deliveries.c.id, deliveries.c.status))).all())
        tried = set((await conn.execute(select(attempts.c.delivery_id))).scalars())
    assert sorted(left.values()) == ["dead", "delivered", "pending"]
    assert tried == {sent[6].id, sent[7].id}


async def claimed(two: Replicas, count: int) -> tuple[store.Subscription, list[store.Outgoing]]:
    """A subscription to everything, one event each of ``count`` orders, their deliveries
    claimed by the owner "me"."""
    async with two.first.db.begin() as conn:
        made = await store.add_subscription(
            conn, "http://127.0.0.1:9/h", ["*"], None, True, "", "whsec_" + "A" * 32
        )
    start = datetime.now(UTC) - timedelta(seconds=5)
    for s in range(count):
        assert await two.first.handle(order_event(f"o-{s}", 1, start)) == [None]
    async with two.first.db.begin() as conn:
        sent = await store.claim(conn, made, "me", datetime.now(UTC), 30, count + 1)
    assert len(sent) == count
    return made, sent


async def test_two_replicas_recording_failures_of_two_endpoints_do_not_deadlock(
    postgres_template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A's POSTs to endpoints X and Y ended in that order, B's in the other: each
    transaction holds its first endpoint's row when it reaches the second. Rows are locked in
    id order, so one waits for the other (none is refused as a deadlock)."""
    async with replicas(webhooks, postgres_template) as two:
        a, b = two.of
        async with a.db.begin() as conn:
            x, y = [
                await store.add_subscription(
                    conn, f"http://127.0.0.1:9/{n}", ["*"], None, True, "", "whsec_" + "A" * 32
                )
                for n in "xy"
            ]
        for s in range(2):
            assert await a.handle(order_event(f"o-{s}", 1, datetime.now(UTC))) == [None]
        now = datetime.now(UTC)
        held = {}
        for replica, owner in ((a, "A"), (b, "B")):
            async with replica.db.begin() as conn:
                held[owner] = [(await store.claim(conn, s, owner, now, 30, 1))[0] for s in (x, y)]

        def failed(sent: store.Outgoing) -> store.Attempt:
            return store.Attempt(sent, store.Outcome(now, 500, 1, "HTTP 500", ""), 60.0)

        both_hold_one = asyncio.Barrier(2)
        breaker = store._breaker

        async def meeting_breaker(conn: Any, *args: Any) -> None:
            await breaker(conn, *args)
            task: Any = asyncio.current_task()
            if not getattr(task, "met", False):
                task.met = True
                with contextlib.suppress(TimeoutError):  # the other waits for this one's lock
                    async with asyncio.timeout(1):
                        await both_hold_one.wait()

        monkeypatch.setattr(store, "_breaker", meeting_breaker)

        async def record(db: Any, owner: str, batch: list[store.Attempt]) -> None:
            async with db.begin() as conn:
                await store.record(conn, owner, batch, 100, 60)

        xa, ya = held["A"]
        xb, yb = held["B"]
        await asyncio.gather(
            record(a.db, "A", [failed(xa), failed(ya)]),
            record(b.db, "B", [failed(yb), failed(xb)]),
        )
        async with a.db.connect() as conn:
            counts = [(await store.subscription(conn, s.id)) for s in (x, y)]
        assert [c.consecutive_failures for c in counts if c is not None] == [2, 2]


async def test_busy_endpoints_cannot_keep_another_from_every_slot(
    two: Replicas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two POST slots in the process, two for one endpoint: X, first in every listing, has a
    backlog that could take both slots each round; Y's deliveries still go out among the
    first, as each round starts at another endpoint."""
    settings = make_settings(
        tmp_path,
        webhook_concurrency=2,
        webhook_endpoint_concurrency=2,
        webhook_order_settle=0,
        webhook_poll_interval=0.02,
    )
    async with two.first.db.begin() as conn:
        x, y = [
            await store.add_subscription(
                conn, f"http://127.0.0.1:9/{n}", [kind], None, True, "", "whsec_" + "A" * 32
            )
            for n, kind in (("x", "OrderStatusChanged"), ("y", "StockUpdated"))
        ]
    start = datetime.now(UTC) - timedelta(seconds=5)
    for s in range(12):
        assert await two.first.handle(order_event(f"o-{s}", 1, start)) == [None]
    stock = StockUpdated(productId="p-1", quantity=3)
    assert await two.first.handle(message(stock)) == [None]
    posted: list[str] = []

    async def post(self: Sender, sent: store.Outgoing) -> store.Outcome:
        posted.append(sent.subscription.id)
        await asyncio.sleep(0.05)
        return store.Outcome(datetime.now(UTC), 200, 50, None, "")

    monkeypatch.setattr(Sender, "post", post)
    worker = asyncio.create_task(
        deliver_webhooks(ServiceContext(webhooks, settings, two.first.db, bus=None))  # type: ignore[arg-type]
    )
    try:
        await eventually(lambda: len(posted) >= 6, timeout=10)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert y.id in posted[:6], [("x" if p == x.id else "y") for p in posted]
    assert x.id in posted


async def test_outcomes_being_written_at_shutdown_are_written_before_it_ends(
    two: Replicas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, webhook_order_settle=0, webhook_poll_interval=0.02)
    async with two.first.db.begin() as conn:
        await store.add_subscription(
            conn, "http://127.0.0.1:9/h", ["*"], None, True, "", "whsec_" + "A" * 32
        )
    assert await two.first.handle(order_event("o-1", 1, datetime.now(UTC))) == [None]

    async def post(self: Sender, sent: store.Outgoing) -> store.Outcome:
        return store.Outcome(datetime.now(UTC), 200, 1, None, "")

    writing = asyncio.Event()
    record = store.record

    async def slow_record(*args: Any) -> None:
        if not writing.is_set():
            writing.set()
            await asyncio.sleep(60)  # stopped in the middle of it
        await record(*args)

    monkeypatch.setattr(Sender, "post", post)
    monkeypatch.setattr(store, "record", slow_record)
    worker = asyncio.create_task(
        deliver_webhooks(ServiceContext(webhooks, settings, two.first.db, bus=None))  # type: ignore[arg-type]
    )
    await asyncio.wait_for(writing.wait(), 10)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    async with two.first.db.connect() as conn:
        assert (await conn.execute(select(deliveries.c.status))).scalars().all() == ["delivered"]
