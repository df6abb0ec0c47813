"""The fault suite: Mercato on RabbitMQ + PostgreSQL, two replicas of every service that
consumes events, under a steady load of checkouts (declined cards and cancellations mixed in),
and one fault per case: a process SIGKILLed and started again, the broker restarted, the
database connections terminated, every event delivered twice, poison messages. After each,
the invariants (``invariants.py``) over every order of the session.

The cases share one system and run in this order. ``MERCATO_LONG=1`` gives each case half a
minute of load instead of a few seconds and SIGKILLs every service in turn, not only the
saga's participants and the gateway (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from mercato.bench.shoppers import Load
from mercato.services import ordered_names
from tests.faults.conftest import FIGURES, Shop
from tests.faults.invariants import settle, subject
from tests.faults.load import LONG, SECONDS
from tests.faults.poison import publish_poison

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FAULT_AT = SECONDS / 3  # into the load
BOUND = 120.0 if LONG else 60.0  # seconds after the load for every order to be final
Fault = Callable[[], Awaitable[None]]


async def case(shop: Shop, name: str, fault: Fault | None = None) -> None:
    """Load for SECONDS with ``fault`` a third of the way in, then every invariant within
    BOUND; the case's figures are kept for the summary."""
    started = time.monotonic()
    loading = asyncio.create_task(shop.shoppers.shop(shop.expected))
    try:
        if fault is not None:
            await asyncio.sleep(FAULT_AT)
            await fault()
    finally:
        load = await loading
    left, waited = await settle(shop.system, shop.expected, BOUND, frozenset(shop.broken))
    shop.broken |= {subject(v) for v in left}
    FIGURES.append(
        await _figures(shop, name, load)
        | {
            "settled": f"{waited:.1f}" if not left else f"not within {BOUND:.0f}",
            "seconds": time.monotonic() - started,
        }
    )
    assert not left, f"{len(left)} violations:\n" + "\n".join(left[:40])


async def _figures(shop: Shop, name: str, load: Load) -> dict[str, object]:
    ids = [p.order_id for p in load.placed]
    async with shop.system.database("order") as conn:
        rows = await conn.fetch(
            "SELECT status, cancel_reason FROM orders WHERE id = ANY($1::text[])", ids
        )
    return {
        "case": name,
        "placed": len(ids),
        "declined": sum(p.declined for p in load.placed),
        "cancelled": sum(r["status"] == "CANCELLED" for r in rows),
        "by_customer": sum(p.cancel_asked for p in load.placed),
        "retries": sum(n for kind, n in load.errors.items() if kind.startswith("POST checkout")),
    }


async def test_steady_load_keeps_every_invariant(shop: Shop) -> None:
    await case(shop, "no fault")


# The saga's participants and the gateway every time; the others are long variants.
SAGA = {"gateway", "order", "payment", "inventory", "shipping"}


@pytest.mark.parametrize(
    "service",
    [pytest.param(n, marks=() if n in SAGA else pytest.mark.long) for n in ordered_names()],
)
async def test_a_sigkilled_service_restarts_and_loses_nothing(shop: Shop, service: str) -> None:
    """One replica (the first: it holds the relay's lock) or the gateway, killed mid-load
    and started again."""

    async def kill_and_restart() -> None:
        await shop.system.kill(service)
        await shop.system.restart(service)

    await case(shop, f"SIGKILL {service}", kill_and_restart)


async def test_a_broker_restart_loses_nothing(shop: Shop) -> None:
    async def restart_broker() -> None:
        await asyncio.to_thread(shop.broker.stop_app)
        await asyncio.sleep(2)
        await asyncio.to_thread(shop.broker.start_app)

    await case(shop, "RabbitMQ restarted", restart_broker)


async def test_terminated_database_connections_lose_nothing(shop: Shop) -> None:
    async def terminate() -> None:
        assert await shop.system.terminate_backends() > 0
        await asyncio.sleep(SECONDS / 4)
        await shop.system.terminate_backends()

    await case(shop, "PostgreSQL backends terminated", terminate)


async def test_every_event_delivered_twice_takes_effect_once(shop: Shop) -> None:
    """Every outbox row of every service written since the case began is published again
    (its ``sent_at`` cleared, so the relays send it once more): mid-load, and after the
    load for what was written since."""
    since = datetime.now(UTC)

    async def again() -> None:
        nonlocal since
        moment, sent_again = datetime.now(UTC), 0
        for service in ordered_names():
            async with shop.system.database(service) as conn:
                done = await conn.execute(
                    "UPDATE outbox SET sent_at = NULL WHERE created_at >= $1 "
                    "AND sent_at IS NOT NULL",
                    since,
                )
            sent_again += int(done.split()[-1])  # "UPDATE n"
        assert sent_again > 0, "no event to send again"
        since = moment

    await case(shop, "every event delivered twice", again)
    await again()  # what the rest of the load wrote, and the sagas it set going
    left, _ = await settle(shop.system, shop.expected, BOUND, frozenset(shop.broken))
    shop.broken |= {subject(v) for v in left}
    assert not left, "\n".join(left[:40])


async def test_poison_and_unknown_messages_become_dead_letters(shop: Shop) -> None:
    async def poison() -> None:
        shop.expected.poison |= await publish_poison(shop.broker.url)

    await case(shop, "poison and unknown messages", poison)


async def test_every_log_line_stays_json_through_the_faults(shop: Shop) -> None:
    """After every case above (kills, the broker's restart, lost connections): each line
    every process wrote is one JSON object, so a log collector never meets a stray line."""
    stray = [
        f"{process}: {line[:200]}"
        for process, text in shop.system.logs().items()
        for line in text.splitlines()
        if line.strip() and not _json_object(line)
    ]
    assert not stray, f"{len(stray)} lines are not JSON:\n" + "\n".join(stray[:20])


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
