"""The audit log on RabbitMQ + PostgreSQL, and on NATS JetStream + PostgreSQL (every service in
this process, on a broker namespace and databases of the test's own): an order's story from the
checkout to the delivery, every event once; redelivery adds no row; a replay twice has no
second effect; catalog's displayed stock rebuilt from the log is the live one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mercato.platform.bus.nats import NatsBus
from mercato.platform.bus.port import topic_of
from mercato.platform.bus.rabbitmq import RabbitBus
from mercato.platform.runtime.system import System
from mercato.platform.storage.database import open_database, service_url
from mercato.services.audit import store
from mercato.services.audit.replay import DONE, replay_status, request_replay
from tests.conftest import eventually, fresh_databases
from tests.e2e import test_saga as saga
from tests.services.audit.story import (
    DELIVERED,
    audited_shop,
    check_story,
    checked_out_and_delivered,
    displayed_stock,
    stored_copies,
    story_of,
    wipe_and_rebuild,
)
from tests.services.audit.test_audit_embedded import payment_events, stored_envelope

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres]
BROKERS = [
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("nats", marks=pytest.mark.nats),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BROKERS)
async def world(
    request: pytest.FixtureRequest,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[saga.Shop, System]]:
    namespace = f"maudit{uuid.uuid4().hex[:8]}"
    bus: RabbitBus | NatsBus
    if request.param == "rabbitmq":
        bus = RabbitBus(request.getfixturevalue("rabbitmq_url"), namespace=namespace)
    else:
        bus = NatsBus(request.getfixturevalue("nats_url"), namespace=namespace)
    async with fresh_databases(postgres_server) as template:
        try:
            async with audited_shop(
                tmp_path_factory.mktemp("audit-real"),
                database_url=template,
                bus=bus,
                database_pool_size=3,
            ) as opened:
                yield opened
        finally:
            await bus.connect()
            await bus.delete_namespace()
            await bus.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(world: tuple[saga.Shop, System]) -> saga.Shop:
    return world[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def delivered(shop: saga.Shop) -> str:
    _, order_id = await checked_out_and_delivered(shop)
    return order_id


async def test_an_orders_story_on_a_broker_and_postgres(shop: saga.Shop, delivered: str) -> None:
    story = await story_of(shop, delivered, *DELIVERED)
    check_story(story, delivered)
    assert set((await stored_copies(shop)).values()) == {1}


async def test_redelivery_on_the_broker_adds_no_row(
    world: tuple[saga.Shop, System], delivered: str
) -> None:
    shop, system = world
    story = await story_of(shop, delivered, *DELIVERED)
    before = await stored_copies(shop)
    again = [await stored_envelope(shop, e["id"]) for e in story["events"]]
    confirmed = await system.bus.send("audit", [(topic_of(e), e) for e in again])
    assert confirmed == [True] * len(again)
    await asyncio.sleep(1.0)  # consumed meanwhile: acknowledged without a row
    # Other events may be stored meanwhile (mails of the order, say): none already stored twice.
    after = await stored_copies(shop)
    assert {event_id: after[event_id] for event_id in before} == before
    assert all(after[e.id] == 1 for e in again)


async def test_pages_newest_first_on_postgres(shop: saga.Shop, delivered: str) -> None:
    await story_of(shop, delivered, *DELIVERED)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"correlationId": delivered, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        got = await shop.http.get("/api/v1/admin/events", params=params, headers=shop.admin)
        assert got.status_code == 200, got.text
        page = got.json()
        seen += [e["time"] for e in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    story = await story_of(shop, delivered, *DELIVERED)
    assert len(seen) == len(story["events"]) and seen == sorted(seen, reverse=True)


async def test_replaying_twice_through_the_broker_has_no_second_effect(
    shop: saga.Shop, delivered: str
) -> None:
    await story_of(shop, delivered, *DELIVERED)
    charges = await payment_events(shop, delivered)
    db = open_database(service_url(shop.settings.database_url, "audit", Path(".")), 2)
    try:
        for _ in range(2):
            request_id = await request_replay(
                db,
                "payment",
                ["*.OrderCreated", "*.OrderCancelled"],
                store.EventFilter(correlation_id=delivered),
            )

            async def finished(request_id: str = request_id) -> Any:
                row = await replay_status(db, request_id)
                return row if row.status not in ("pending", "running") else None

            row = await eventually(finished, timeout=20)
            assert row.status == DONE and row.delivered == row.matched == 1, row.error
    finally:
        await db.dispose()
    await asyncio.sleep(1.0)  # the broker has delivered them meanwhile
    assert await payment_events(shop, delivered) == charges


async def test_catalog_stock_rebuilt_on_postgres_is_the_live_one(
    shop: saga.Shop, delivered: str
) -> None:
    await story_of(shop, delivered, *DELIVERED)
    live = await wipe_and_rebuild(shop)
    assert await displayed_stock(shop) == live
