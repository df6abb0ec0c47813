"""The audit log end to end, embedded (in-process bus, SQLite): every event kept once, read
back over HTTP (the order's story, filtered pages), replayed harmlessly, exported, pruned."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from mercato.platform.bus.port import EventBus, topic_of
from mercato.platform.dead_letters import list_dead_letters
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.database import open_database, service_url
from mercato.platform.storage.tables import outbox
from mercato.services.audit import store
from mercato.services.audit.replay import DONE, replay_status, request_replay
from tests.conftest import eventually
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

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[saga.Shop, System]]:
    async with audited_shop(tmp_path_factory.mktemp("audit")) as opened:
        yield opened


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(world: tuple[saga.Shop, System]) -> saga.Shop:
    return world[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(world: tuple[saga.Shop, System]) -> EventBus:
    return world[1].bus


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def delivered(shop: saga.Shop) -> tuple[dict[str, str], str]:
    return await checked_out_and_delivered(shop)


async def test_an_orders_story_from_checkout_to_delivery(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    story = await story_of(shop, order_id, *DELIVERED)
    check_story(story, order_id)
    copies = await stored_copies(shop)
    assert set(copies.values()) == {1}


async def test_every_published_event_is_in_the_log_once(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    published: set[str] = set()
    for name in ("identity", "catalog", "inventory", "cart", "order", "payment", "shipping"):
        published |= {e.id for e in await outbox_events(shop, name)}

    async def all_kept() -> bool:
        return published <= set(await stored_copies(shop))

    await eventually(all_kept, timeout=15)
    # Types no other service consumes are kept too (identity's, the cart's item events).
    page = await admin_events(shop, type="UserAuthenticated")
    assert page["items"] and page["items"][0]["type"] == "UserAuthenticated"


async def test_redelivery_adds_no_row(
    shop: saga.Shop, bus: EventBus, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    story = await story_of(shop, order_id, *DELIVERED)
    before = await stored_copies(shop)
    again = [await stored_envelope(shop, e["id"]) for e in story["events"]]
    assert await bus.send("audit", [(topic_of(e), e) for e in again]) == [True] * len(again)
    assert await stored_copies(shop) == before


async def test_events_page_newest_first_with_filters_and_cursors(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    whole = await admin_events(shop, correlationId=order_id, limit=500)
    assert whole["nextCursor"] is None
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await admin_events(shop, correlationId=order_id, limit=3, cursor=cursor)
        assert len(page["items"]) <= 3
        seen += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in whole["items"]]
    times = [e["time"] for e in seen]
    assert times == sorted(times, reverse=True), "newest first"
    assert all(e["specversion"] == "1.0" and e["correlationid"] == order_id for e in seen)
    # Type and subject filters.
    changes = await admin_events(shop, correlationId=order_id, type="OrderStatusChanged")
    statuses = [e["data"]["status"] for e in reversed(changes["items"])]
    assert statuses == ["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED"]
    about = await admin_events(shop, subject=order_id, type="OrderCreated")
    assert [e["data"]["orderId"] for e in about["items"]] == [order_id]
    # A time window: since the order was created, until its completion (exclusive).
    created = about["items"][0]["time"]
    completed = (await admin_events(shop, correlationId=order_id, type="OrderCompleted"))["items"]
    window = await admin_events(
        shop, correlationId=order_id, since=created, until=completed[0]["time"], limit=500
    )
    types = {e["type"] for e in window["items"]}
    assert "OrderCreated" in types and "OrderCompleted" not in types
    assert "CartCheckedOut" not in types


async def test_bad_queries_are_422_and_customers_get_403(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    who, order_id = delivered
    for params in ({"cursor": "not-a-cursor"}, {"since": "yesterday"}, {"until": "2026-01-01"}):
        got = await shop.http.get("/api/v1/admin/events", params=params, headers=shop.admin)
        assert got.status_code == 422, (params, got.text)
        assert got.headers["content-type"].startswith("application/problem+json")
    for path in ("/api/v1/admin/events", f"/api/v1/admin/orders/{order_id}/story"):
        assert (await shop.http.get(path, headers=who)).status_code == 403
        assert (await shop.http.get(path)).status_code == 401
    missing = await shop.http.get("/api/v1/admin/orders/no-such-order/story", headers=shop.admin)
    assert missing.status_code == 404


async def test_replaying_twice_to_a_service_has_no_second_effect(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    charges = await payment_events(shop, order_id)
    db = audit_db(shop)
    try:
        where = store.EventFilter(correlation_id=order_id)
        for _ in range(2):
            request_id = await request_replay(db, "payment", ["*.OrderCreated"], where)

            async def finished(request_id: str = request_id) -> Any:
                row = await replay_status(db, request_id)
                return row if row.status not in ("pending", "running") else None

            row = await eventually(finished, timeout=15)
            assert row.status == DONE and row.delivered == row.matched == 1, row.error
    finally:
        await db.dispose()
    await asyncio.sleep(0.3)
    assert await payment_events(shop, order_id) == charges


async def test_a_replay_to_a_service_with_no_queue_fails_with_the_reason(
    shop: saga.Shop,
) -> None:
    db = audit_db(shop)
    try:
        request_id = await request_replay(db, "nobody", ["#"], store.EventFilter())
        row = await eventually(lambda: _settled(db, request_id), timeout=15)
        assert row.status == "failed" and "nobody" in row.error
    finally:
        await db.dispose()


async def test_export_writes_json_lines_of_every_event_since(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    out = await cli(shop, "events", "export", "--since", "1h", "--correlation-id", order_id)
    lines = out.splitlines()
    exported = [Envelope.from_json(line) for line in lines]
    story = await story_of(shop, order_id, *DELIVERED)
    assert sorted(e.id for e in exported) == sorted(e["id"] for e in story["events"])
    assert [e.time for e in exported] == sorted(e.time for e in exported)
    assert json.loads(lines[0])["specversion"] == "1.0"


async def test_cli_query_tail_and_story(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    tree = await cli(shop, "events", "story", order_id)
    assert f"order {order_id}" in tree and "OrderCompleted" in tree and "after its cause" in tree
    queried = await cli(shop, "events", "query", "--correlation-id", order_id, "--json")
    assert {json.loads(line)["correlationid"] for line in queried.splitlines()} == {order_id}
    tailed = await cli(shop, "events", "tail", "--type", "OrderCompleted", "-n", "5")
    assert "OrderCompleted" in tailed and "OrderCreated" not in tailed


async def test_retention_prunes_only_older_events(shop: saga.Shop, bus: EventBus) -> None:
    db = audit_db(shop)
    old = Envelope(
        type="ProductViewed",
        source="mercato/catalog",
        data={"productId": "p-old"},
        subject="p-old",
        time=datetime.now(UTC) - timedelta(days=40),
    )
    new = Envelope(
        type="ProductViewed", source="mercato/catalog", data={"productId": "p-new"}, subject="p-new"
    )
    try:
        assert await bus.send("audit", [(topic_of(e), e) for e in (old, new)]) == [True, True]
        assert {old.id, new.id} <= set(await stored_copies(shop))
        removed = await store.prune(db, datetime.now(UTC) - timedelta(days=30), chunk=1)
        assert removed == 1
        kept = set(await stored_copies(shop))
        assert old.id not in kept and new.id in kept
    finally:
        await db.dispose()


# -- helpers ---------------------------------------------------------------------------------
async def admin_events(shop: saga.Shop, **params: Any) -> dict[str, Any]:
    query = {k: v for k, v in params.items() if v is not None}
    got = await shop.http.get("/api/v1/admin/events", params=query, headers=shop.admin)
    assert got.status_code == 200, got.text
    page: dict[str, Any] = got.json()
    return page


def audit_db(shop: saga.Shop) -> Any:
    return open_database(
        service_url(shop.settings.database_url, "audit", shop.settings.data_dir), 2
    )


async def _settled(db: Any, request_id: str) -> Any:
    row = await replay_status(db, request_id)
    return row if row.status not in ("pending", "running") else None


async def stored_envelope(shop: saga.Shop, event_id: str) -> Envelope:
    db = audit_db(shop)
    try:
        async with db.connect() as conn:
            text = await conn.scalar(
                sa.select(store.events.c.envelope).where(store.events.c.event_id == event_id)
            )
    finally:
        await db.dispose()
    return Envelope.from_json(text)


async def outbox_events(shop: saga.Shop, service: str) -> list[Envelope]:
    db = open_database(service_url(shop.settings.database_url, service, shop.settings.data_dir), 2)
    try:
        async with db.connect() as conn:
            rows = (await conn.execute(sa.select(outbox.c.envelope))).all()
    finally:
        await db.dispose()
    return [Envelope.from_json(r.envelope) for r in rows]


async def payment_events(shop: saga.Shop, order_id: str) -> list[str]:
    return sorted(
        e.type for e in await outbox_events(shop, "payment") if e.correlationid == order_id
    )


async def cli(shop: saga.Shop, *args: str) -> str:
    """A ``mercato`` command on this shop's data directory, in a process of its own."""
    env = {**os.environ, "MERCATO_DATA_DIR": str(shop.settings.data_dir), "COLUMNS": "200"}
    env.pop("MERCATO_DATABASE_URL", None)
    if shop.settings.database_url:
        env["MERCATO_DATABASE_URL"] = shop.settings.database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mercato",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_catalog_stock_wiped_and_rebuilt_from_the_log_is_the_same(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    live = await wipe_and_rebuild(shop)
    assert await displayed_stock(shop) == live
    # The same through the CLI, and as a shopper sees it.
    shown = {p: (await shop.available(p)) for p in live}
    out = await cli(shop, "events", "rebuild", "catalog-stock", "--wipe")
    assert "rebuilt from" in out
    assert await displayed_stock(shop) == live
    assert {p: (await shop.available(p)) for p in live} == shown


async def test_cli_replay_to_a_service_is_harmless(
    shop: saga.Shop, delivered: tuple[dict[str, str], str]
) -> None:
    _, order_id = delivered
    await story_of(shop, order_id, *DELIVERED)
    charges = await payment_events(shop, order_id)
    for _ in range(2):
        out = await cli(
            shop,
            "events",
            "replay",
            "--to",
            "payment",
            "--correlation-id",
            order_id,
            "--since",
            "1h",
        )
        assert "replayed 1 event(s) to payment" in out  # of the order's events, OrderCreated
    assert await payment_events(shop, order_id) == charges


async def test_what_no_model_takes_is_an_audit_dead_letter_not_a_row(
    shop: saga.Shop, bus: EventBus
) -> None:
    marker = f"poison-{os.urandom(4).hex()}"
    unknown = Envelope(type="OrderTeleported", source="mercato/order", data={"orderId": marker})
    invalid = Envelope(type="OrderCreated", source="mercato/order", data={"orderId": [marker]})
    for envelope in (unknown, invalid):
        headers, body = envelope.to_binary(bus.prefix)  # type: ignore[attr-defined]
        await bus.publish_raw(topic_of(envelope), headers, body)
    await bus.publish_raw("order.OrderCreated", {}, f"not an event {marker}".encode())
    db = audit_db(shop)
    try:

        async def letters() -> list[Any]:
            found = await list_dead_letters(db)
            mine = [r for r in found if marker.encode() in bytes(r.body)]
            return mine if len(mine) == 3 else []

        kept = await eventually(letters, timeout=15)
    finally:
        await db.dispose()
    errors = sorted(r.error.partition(":")[0] for r in kept)
    assert errors == [
        "invalid OrderCreated payload",
        "malformed event",
        "unknown event type 'OrderTeleported'",
    ]
    assert {unknown.id, invalid.id}.isdisjoint(await stored_copies(shop))


async def test_cli_tail_follow_prints_each_event_as_it_is_stored(
    shop: saga.Shop, bus: EventBus
) -> None:
    env = {**os.environ, "MERCATO_DATA_DIR": str(shop.settings.data_dir), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mercato", "events", "tail", "--follow", "--type", "ProductViewed"),
        *("-n", "0", "--interval", "0.1"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        marker = f"p-follow-{os.urandom(3).hex()}"
        printed = ""

        async def shown() -> bool:
            nonlocal printed
            # One more event each time, until the command, up by then, prints one: it
            # follows from its start on, so what was stored before is not printed.
            product = f"{marker}-{os.urandom(2).hex()}"
            event = Envelope(
                type="ProductViewed",
                source="mercato/catalog",
                data={"productId": product},
                subject=product,
            )
            assert await bus.send("audit", [(topic_of(event), event)]) == [True]
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 0.5)  # type: ignore[union-attr]
            except TimeoutError:
                return False
            printed += line.decode()
            return marker in printed

        await eventually(shown, timeout=60, interval=0.5)
        assert "ProductViewed" in printed and "catalog" in printed
    finally:
        proc.terminate()
        await proc.wait()
