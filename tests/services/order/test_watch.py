"""The watch on its own: nudges hand the committed order over (no read), tell its history while
they tell every step, and a step they did not tell is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from mercato.contracts.events import PaymentCompleted
from mercato.services.order.domain import Change, react
from mercato.services.order.orders import place
from mercato.services.order.store import Stored
from mercato.services.order.watch import Seen, nudge, watch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Kept:
    """The order as the database would hold it, and how often it was read."""

    def __init__(self) -> None:
        self.stored: Stored | None = None
        self.history: list[Change] = []
        self.reads = 0

    async def read(self) -> Stored | None:
        self.reads += 1
        return self.stored

    def commit(self, stored: Stored, changes: tuple[Change, ...], *, tell: bool = True) -> None:
        self.stored = stored
        self.history.extend(changes)
        if tell:
            nudge(stored.order.order_id, stored, changes)


async def test_nudges_hand_the_order_and_its_history_over_without_reads() -> None:
    kept = Kept()
    seen: list[Seen] = []

    async def follow() -> None:
        async for s in watch("o-1", kept.read, appear=5):
            seen.append(s)

    following = asyncio.ensure_future(follow())
    await asyncio.sleep(0.05)
    placed = place("o-1", "u-1", [("p-1", 1, Decimal("10"))], NOW)
    kept.commit(Stored(placed.order, 1, NOW), placed.changes)
    await asyncio.sleep(0.05)
    paid = react(placed.order, PaymentCompleted(paymentId="pay", orderId="o-1", status="OK"), NOW)
    nudge("o-1", Stored(placed.order, 1, NOW), placed.changes)  # late, stale: changes nothing
    kept.commit(Stored(paid.order, 2, NOW), paid.changes)
    await asyncio.sleep(0.05)
    assert kept.reads == 1  # the first, which found nothing
    assert [(s.stored.version, s.history) for s in seen] == [
        (1, tuple(kept.history[:1])),
        (2, tuple(kept.history)),
    ]
    following.cancel()


async def test_a_step_the_nudges_did_not_tell_leaves_the_history_to_be_read() -> None:
    kept = Kept()
    placed = place("o-1", "u-1", [("p-1", 1, Decimal("10"))], NOW)
    kept.commit(Stored(placed.order, 1, NOW), placed.changes)
    changes = watch("o-1", kept.read)
    first = await anext(changes)
    assert first.stored.version == 1 and first.history is None  # there before the watch
    paid = react(placed.order, PaymentCompleted(paymentId="pay", orderId="o-1", status="OK"), NOW)
    kept.commit(Stored(paid.order, 2, NOW), paid.changes, tell=False)  # another replica's
    nudge("o-1")
    second = await asyncio.wait_for(anext(changes), 2)
    assert second.stored.version == 2 and second.history is None and kept.reads == 2
    await changes.aclose()


async def test_someone_elses_order_ends_the_watch_at_once() -> None:
    kept = Kept()
    placed = place("o-1", "u-1", [("p-1", 1, Decimal("10"))], NOW)
    kept.commit(Stored(placed.order, 1, NOW), placed.changes)
    mine = [s async for s in watch("o-1", kept.read, visible=lambda _: False, appear=5)]
    assert mine == []
