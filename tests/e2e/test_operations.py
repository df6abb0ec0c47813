"""The operator's routes, embedded: real dead letters (a handler that fails until its cause is
fixed, and a poison event) listed, inspected, redriven and discarded over HTTP, with the CLI
seeing the same letters; the system's health; admins only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.platform.runtime.system import System
from mercato.services import load_service
from tests.conftest import eventually
from tests.demo import ledger, tally
from tests.demo.probe import count_of, freeze, letters, mercato, thaw
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "ops@shop.example", "password": "admin-pass-42"}
SERVICES = ("identity", "catalog", "inventory", "gateway")


@dataclass
class Ops:
    system: System
    http: httpx.AsyncClient
    admin: dict[str, str]
    customer: dict[str, str]
    data_dir: Path

    def db(self, name: str) -> Any:
        ctx = self.system.hosts[name].ctx
        assert ctx is not None
        return ctx.db

    async def get(self, path: str, **params: str) -> Any:
        answer = await self.http.get(path, params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    answer = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Ops]:
    settings = make_settings(
        tmp_path,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        max_attempts=2,
        retry_base_delay=0.01,
    )
    services = [*(load_service(n) for n in SERVICES), ledger.service, tally.service]
    async with running(services, settings) as (system, http):
        admin = await sign_in(http, ADMIN["email"], ADMIN["password"])
        who = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
        assert (await http.post("/api/v1/auth/register", json=who)).status_code == 201
        customer = await sign_in(http, who["email"], who["password"])
        yield Ops(system, http, admin, customer, tmp_path)


async def poison(system: System) -> str:
    """An OrderCreated whose payload fails its model (inventory consumes OrderCreated)."""
    marker = "poison-order"
    envelope = Envelope(type="OrderCreated", source="mercato/order", data={"orderId": [marker]})
    headers, body = envelope.to_binary(getattr(system.bus, "prefix", AMQP_PREFIX))
    await system.bus.publish_raw("order.OrderCreated", headers, body)
    return envelope.id


async def dead_letter(system: System, admin: dict[str, str], http: httpx.AsyncClient) -> str:
    """The public id of a new dead letter (a poison event), once the routes list it."""
    event_id = await poison(system)

    async def listed() -> str | None:
        answer = await http.get("/api/v1/admin/dead-letters", headers=admin)
        found = [x["id"] for x in answer.json()["items"] if x["eventId"] == event_id]
        return found[0] if found else None

    letter: str = await eventually(listed, timeout=30)
    return letter


async def test_dead_letters_are_listed_inspected_redriven_and_discarded_over_http(
    ops: Ops,
) -> None:
    tally_db = ops.db("tally")
    await freeze(tally_db, "acc-frozen")
    ledger_ctx = ops.system.hosts["ledger"].ctx
    assert ledger_ctx is not None
    async with ledger_ctx.transaction() as uow:
        stuck = await ledger.record_entry(uow, "acc-frozen", Decimal("5.00"))
    poisoned = await poison(ops.system)
    await eventually(lambda: letters(tally_db), timeout=30)
    await eventually(lambda: letters(ops.db("inventory")), timeout=30)

    listed = await ops.get("/api/v1/admin/dead-letters")
    assert listed["nextCursor"] is None
    by_service = {x["service"]: x for x in listed["items"]}
    assert set(by_service) == {"tally", "inventory"}
    frozen, bad = by_service["tally"], by_service["inventory"]
    assert (frozen["eventType"], frozen["eventId"], frozen["status"]) == (
        "EntryRecorded",
        stuck.id,
        "open",
    )
    assert frozen["attempts"] == 2 and "account acc-frozen is frozen" in frozen["error"]
    assert frozen["firstFailedAt"] <= frozen["lastFailedAt"]
    assert (bad["eventType"], bad["eventId"]) == ("OrderCreated", poisoned)
    assert "invalid OrderCreated payload" in bad["error"]
    # Filters: by service, by type, by status.
    only = await ops.get("/api/v1/admin/dead-letters", service="tally")
    assert [x["id"] for x in only["items"]] == [frozen["id"]]
    typed = await ops.get("/api/v1/admin/dead-letters", type="OrderCreated")
    assert [x["id"] for x in typed["items"]] == [bad["id"]]
    assert (await ops.get("/api/v1/admin/dead-letters", status="discarded"))["items"] == []
    # Pages of one: newest failure first, then the other, then the end.
    first = await ops.get("/api/v1/admin/dead-letters", limit="1")
    assert first["nextCursor"] is not None
    second = await ops.get("/api/v1/admin/dead-letters", limit="1", cursor=first["nextCursor"])
    assert second["nextCursor"] is None
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [x["id"] for x in listed["items"]]

    # Inspected: the event as a structured CloudEvent.
    detail = await ops.get(f"/api/v1/admin/dead-letters/{frozen['id']}")
    assert detail["envelope"]["type"] == "EntryRecorded" and detail["envelope"]["id"] == stuck.id
    assert detail["envelope"]["data"]["account"] == "acc-frozen"
    assert detail["discardReason"] is None and '"acc-frozen"' in detail["body"]

    # Redriven while the cause is still there: still open, one more attempt, the new error.
    again = await ops.http.post(
        f"/api/v1/admin/dead-letters/{frozen['id']}/redrive", headers=ops.admin
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "open" and again.json()["attempts"] == 3
    # Fixed, then redriven: handled once.
    await thaw(tally_db, "acc-frozen")
    done = await ops.http.post(
        f"/api/v1/admin/dead-letters/{frozen['id']}/redrive", headers=ops.admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "redriven" and done.json()["redrivenAt"]
    assert await count_of(tally_db, "acc-frozen") == 1
    twice = await ops.http.post(
        f"/api/v1/admin/dead-letters/{frozen['id']}/redrive", headers=ops.admin
    )
    assert twice.status_code == 422 and "redriven" in twice.json()["detail"]
    assert await count_of(tally_db, "acc-frozen") == 1

    # The poison event cannot be fixed: discarded with a reason, kept and visible.
    url = f"/api/v1/admin/dead-letters/{bad['id']}/discard"
    for body in ({}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "a\x00b"}):
        refused = await ops.http.post(url, json=body, headers=ops.admin)
        assert refused.status_code == 422, (body, refused.text)
    reason = "malformed by an old order service; the order was re-placed"
    discarded = await ops.http.post(url, json={"reason": reason}, headers=ops.admin)
    assert discarded.status_code == 200, discarded.text
    assert discarded.json()["status"] == "discarded"
    assert discarded.json()["discardReason"] == reason and discarded.json()["discardedAt"]
    assert (
        await ops.http.post(url, json={"reason": "again"}, headers=ops.admin)
    ).status_code == 422
    redrive_discarded = await ops.http.post(
        f"/api/v1/admin/dead-letters/{bad['id']}/redrive", headers=ops.admin
    )
    assert redrive_discarded.status_code == 422
    shown = await ops.get(f"/api/v1/admin/dead-letters/{bad['id']}")
    assert shown["status"] == "discarded" and shown["discardReason"] == reason
    assert shown["envelope"]["type"] == "OrderCreated"
    kept = await ops.get("/api/v1/admin/dead-letters", status="discarded")
    assert [x["id"] for x in kept["items"]] == [bad["id"]]
    every = await ops.get("/api/v1/admin/dead-letters")
    assert {x["id"]: x["status"] for x in every["items"]} == {
        frozen["id"]: "redriven",
        bad["id"]: "discarded",
    }
    assert (await ops.get("/api/v1/admin/dead-letters", status="open"))["items"] == []

    # The CLI shares the implementation: the same ids and statuses.
    env = {"MERCATO_DATA_DIR": str(ops.data_dir)}
    code, out = await mercato(
        "dlq", "list", "--all", "--service", "tally", "--service", "inventory", env=env
    )
    assert code == 0, out
    assert frozen["id"] in out and bad["id"] in out and "discarded" in out and "redriven" in out
    code, out = await mercato("dlq", "show", bad["id"], env=env)
    assert code == 0 and reason in out, out


async def test_unknown_or_malformed_ids_and_bad_queries_are_clear_errors(ops: Ops) -> None:
    for letter_id in ("tally.no-such-letter", "nowhere.x", "no-dot-at-all"):
        for method, suffix, body in (
            ("GET", "", None),
            ("POST", "/redrive", None),
            ("POST", "/discard", {"reason": "gone"}),
        ):
            answer = await ops.http.request(
                method,
                f"/api/v1/admin/dead-letters/{letter_id}{suffix}",
                json=body,
                headers=ops.admin,
            )
            assert answer.status_code == 404, (letter_id, suffix, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
    for params in (
        {"service": "nowhere"},
        {"status": "dead"},
        {"limit": "0"},
        {"limit": "201"},
        {"cursor": "not-a-cursor"},
    ):
        answer = await ops.http.get("/api/v1/admin/dead-letters", params=params, headers=ops.admin)
        assert answer.status_code == 422, (params, answer.text)


async def test_the_system_view_shows_each_service_and_its_open_dead_letters(ops: Ops) -> None:
    await poison(ops.system)
    await eventually(lambda: letters(ops.db("inventory")), timeout=30)
    shown = await ops.get("/api/v1/admin/system")
    services = {s["name"]: s for s in shown["services"]}
    assert set(services) == {*SERVICES, "ledger", "tally"}
    for name, health in services.items():
        assert health["ready"] is True and health["reason"] is None, name
        assert health["outboxBacklog"] >= 0 and health["oldestUnsentAgeSeconds"] >= 0, name
    assert services["inventory"]["deadLetters"] == 1
    assert services["tally"]["deadLetters"] == 0


async def test_the_system_view_shows_an_unsent_backlog_and_a_service_that_is_down(
    ops: Ops,
) -> None:
    # The ledger's relay is stopped: what it writes stays in its outbox, unsent.
    relay = ops.system.hosts["ledger"].relay
    assert relay is not None
    relay.stop()
    await eventually(lambda: _stopped(ops), timeout=30)
    ledger_ctx = ops.system.hosts["ledger"].ctx
    assert ledger_ctx is not None
    async with ledger_ctx.transaction() as uow:
        await ledger.record_entry(uow, "acc-1", Decimal("1.00"))

    async def backlog() -> dict[str, Any]:
        shown = await ops.get("/api/v1/admin/system")
        found = next(s for s in shown["services"] if s["name"] == "ledger")
        return found if found["outboxBacklog"] == 1 else {}

    found = await eventually(backlog, timeout=30)
    assert found["oldestUnsentAgeSeconds"] > 0
    # A service whose gRPC server is gone: not ready, and said so; the others still answer.
    await ops.system.hosts["tally"].stop()
    shown = await ops.get("/api/v1/admin/system")
    tally_health = next(s for s in shown["services"] if s["name"] == "tally")
    assert tally_health["ready"] is False and tally_health["reason"]
    assert tally_health["deadLetters"] is None
    assert all(s["ready"] for s in shown["services"] if s["name"] != "tally")


async def _stopped(ops: Ops) -> bool:
    task = ops.system.hosts["ledger"]._relay_task
    return task is not None and task.done()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/admin/dead-letters", None),
        ("GET", "/api/v1/admin/dead-letters/tally.x", None),
        ("POST", "/api/v1/admin/dead-letters/tally.x/redrive", None),
        ("POST", "/api/v1/admin/dead-letters/tally.x/discard", {"reason": "no"}),
        ("GET", "/api/v1/admin/system", None),
    ],
)
async def test_operators_routes_need_an_admin(ops: Ops, method: str, path: str, body: Any) -> None:
    nobody = await ops.http.request(method, path, json=body)
    assert nobody.status_code == 401, nobody.text
    customer = await ops.http.request(method, path, json=body, headers=ops.customer)
    assert customer.status_code == 403, customer.text
