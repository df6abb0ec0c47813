"""webhooks with identity and the gateway (in-process bus, SQLite), fed events on the bus and
driven through the admin routes, delivering to a real receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mercato.contracts.events import OrderCreated, OrderPaid, Payload, PricedItem, ProductViewed
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.services import load_service
from mercato.services.webhooks import store
from mercato.services.webhooks.tables import attempts
from mercato.services.webhooks.targets import GuardedResolver, RefusedTarget
from tests.conftest import eventually
from tests.services.webhooks.receiver import Receiver
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
HOOKS = "/api/v1/admin/webhooks"


@dataclass
class Hub:
    system: System
    http: httpx.AsyncClient
    admin: dict[str, str]

    @property
    def ctx(self) -> Any:
        return self.system.hosts["webhooks"].ctx

    async def tell(self, payload: Payload, subject: str = "o-1", source: str = "order") -> Envelope:
        envelope = Envelope(
            type=type(payload).__name__,
            source=f"mercato/{source}",
            data=payload.dump(),
            subject=subject,
        )
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]
        return envelope

    async def subscribe(self, url: str, types: list[str] | None = None, **more: Any) -> Any:
        body = {"url": url, "eventTypes": types or ["*"], **more}
        made = await self.http.post(HOOKS, json=body, headers=self.admin)
        assert made.status_code == 201, made.text
        return made.json()

    async def deliveries(self, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
        found = await self.http.get(
            f"{HOOKS}/{subscription_id}/deliveries", params=params, headers=self.admin
        )
        assert found.status_code == 200, found.text
        return list(found.json()["items"])

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        found = await self.http.get(f"{HOOKS}/{subscription_id}", headers=self.admin)
        assert found.status_code == 200, found.text
        return dict(found.json())


@asynccontextmanager
async def open_hub(data_dir: Path, **overrides: Any) -> AsyncIterator[Hub]:
    values: dict[str, Any] = {
        "admin_email": ADMIN["email"],
        "admin_password": ADMIN["password"],
        "webhook_allow_private_targets": True,
        "webhook_retry_base": 0.05,
        "webhook_retry_max": 0.2,
        "webhook_max_attempts": 3,
        "webhook_poll_interval": 0.05,
        "webhook_order_settle": 0.0,
        "webhook_timeout": 2.0,
        **overrides,
    }
    settings = make_settings(data_dir, **values)
    services = [load_service(n) for n in ("identity", "webhooks", "gateway")]
    async with running(services, settings) as (system, http):
        login = await http.post("/api/v1/auth/login", json=ADMIN)
        admin = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        yield Hub(system, http, admin)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with open_hub(tmp_path) as opened:
        yield opened


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def created(order_id: str = "o-1") -> OrderCreated:
    item = PricedItem(productId="p-1", quantity=1, price=Decimal(3))
    return OrderCreated(
        orderId=order_id, userId="u-1", items=[item], totalAmount=Decimal(3), status="CREATED"
    )


def paid(order_id: str = "o-1") -> OrderPaid:
    return OrderPaid(orderId=order_id, paymentId="pay-1", amount=Decimal(3))


async def test_subscriptions_are_made_read_changed_and_deleted_by_an_admin(
    hub: Hub, receiver: Receiver
) -> None:
    made = await hub.subscribe(receiver.url, ["OrderPaid", "OrderCreated"], description="ERP")
    assert made["secret"].startswith("whsec_") and made["circuit"] == "closed"
    assert made["eventTypes"] == ["OrderCreated", "OrderPaid"] and made["active"] is True
    shown = await hub.subscription(made["id"])
    assert shown["secret"] is None  # shown once, at creation
    listed = (await hub.http.get(HOOKS, headers=hub.admin)).json()
    assert listed["total"] == 1 and listed["page"] == 1 and listed["items"][0]["id"] == made["id"]
    changed = await hub.http.patch(
        f"{HOOKS}/{made['id']}",
        json={"eventTypes": ["OrderPaid"], "subject": "o-9", "active": False},
        headers=hub.admin,
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert (after["eventTypes"], after["subject"], after["active"]) == (["OrderPaid"], "o-9", False)
    assert (await hub.http.delete(f"{HOOKS}/{made['id']}", headers=hub.admin)).status_code == 204
    assert (await hub.http.get(f"{HOOKS}/{made['id']}", headers=hub.admin)).status_code == 404
    assert (await hub.http.delete(f"{HOOKS}/{made['id']}", headers=hub.admin)).status_code == 404


async def test_bad_subscriptions_are_refused_with_the_reason(hub: Hub) -> None:
    for body, words in [
        ({"url": "ftp://x.example/h", "eventTypes": ["*"]}, "http"),
        ({"url": "http://x.example/h", "eventTypes": ["OrderMade"]}, "unknown event type"),
        ({"url": "http://x.example/h", "eventTypes": []}, ""),
        ({"url": "http://x.example/h", "eventTypes": ["*"], "colour": "red"}, ""),
    ]:
        refused = await hub.http.post(HOOKS, json=body, headers=hub.admin)
        assert refused.status_code == 422, refused.text
        assert words in refused.text
    listed = (await hub.http.get(HOOKS, headers=hub.admin)).json()
    assert listed["total"] == 0


async def test_only_an_admin_manages_webhooks(hub: Hub) -> None:
    assert (await hub.http.get(HOOKS)).status_code == 401
    who = {"email": "shopper@example.com", "password": "correct horse 9", "name": "Ada"}
    assert (await hub.http.post("/api/v1/auth/register", json=who)).status_code == 201
    credentials = {"email": who["email"], "password": who["password"]}
    login = await hub.http.post("/api/v1/auth/login", json=credentials)
    customer = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    assert (await hub.http.get(HOOKS, headers=customer)).status_code == 403


async def test_events_arrive_signed_once_each_and_only_those_asked_for(
    hub: Hub, receiver: Receiver
) -> None:
    made = await hub.subscribe(receiver.url, ["OrderCreated", "OrderPaid"])
    receiver.secret = made["secret"]
    first = await hub.tell(created())
    await hub.tell(ProductViewed(productId="p-1"), subject="p-1", source="catalog")
    second = await hub.tell(paid())
    await eventually(lambda: len(receiver.received) == 2)
    assert [r.event["id"] for r in receiver.received] == [first.id, second.id]
    got = receiver.received[0]
    assert got.event == first.to_structured() | {"time": got.event["time"]}
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    assert not receiver.refused
    (delivered, _) = await hub.deliveries(made["id"], status="delivered")
    assert delivered["id"] == receiver.received[1].webhook_id
    assert delivered["attempts"][0]["statusCode"] == 204


async def test_a_subject_filter_keeps_other_subjects_out(hub: Hub, receiver: Receiver) -> None:
    await hub.subscribe(receiver.url, ["*"], subject="o-2")
    await hub.tell(created("o-1"), subject="o-1")
    wanted = await hub.tell(created("o-2"), subject="o-2")
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0].event["id"] == wanted.id


async def test_a_failing_endpoint_is_retried_then_dead_and_a_redrive_keeps_its_webhook_id(
    hub: Hub, receiver: Receiver
) -> None:
    made = await hub.subscribe(receiver.url)
    receiver.answer = 500
    await hub.tell(created())

    async def dead() -> list[dict[str, Any]]:
        return await hub.deliveries(made["id"], status="dead")

    (letter,) = await eventually(dead)
    assert letter["attemptCount"] == 3 and len(letter["attempts"]) == 3
    assert {a["statusCode"] for a in letter["attempts"]} == {500}
    assert letter["attempts"][0]["responseExcerpt"] == "no" and letter["lastError"] == "HTTP 500"
    receiver.answer = 204
    redriven = await hub.http.post(f"{HOOKS}/deliveries/{letter['id']}/redrive", headers=hub.admin)
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["status"] == "pending"
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0].webhook_id == letter["id"]
    again = await hub.http.post(f"{HOOKS}/deliveries/{letter['id']}/redrive", headers=hub.admin)
    assert again.status_code in (200, 422)  # delivered again, or still pending
    missing = await hub.http.post(f"{HOOKS}/deliveries/msg_nope/redrive", headers=hub.admin)
    assert missing.status_code == 404


async def test_a_redirect_is_not_followed_and_a_long_answer_is_read_only_up_to_the_limit(
    hub: Hub, receiver: Receiver
) -> None:
    elsewhere = Receiver()
    await elsewhere.start()
    try:
        made = await hub.subscribe(receiver.url)
        receiver.answer = 307
        receiver.answer_headers = {"location": elsewhere.url}
        receiver.answer_body = b"x" * 100_000
        await hub.tell(created())

        async def tried() -> list[dict[str, Any]]:
            found = await hub.deliveries(made["id"])
            return found[0]["attempts"] if found else []

        first = (await eventually(tried))[0]
        assert first["statusCode"] == 307 and first["error"] == "HTTP 307"
        assert first["responseExcerpt"] == "x" * hub.ctx.settings.webhook_response_limit
        assert elsewhere.received == []
    finally:
        await elsewhere.stop()


async def test_the_old_secret_signs_during_the_overlap_and_not_after(
    hub: Hub, receiver: Receiver
) -> None:
    made = await hub.subscribe(receiver.url)
    old = made["secret"]
    rotated = await hub.http.post(
        f"{HOOKS}/{made['id']}/rotate-secret", json={"overlapSeconds": 3600}, headers=hub.admin
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previousSecretExpiresAt"] is not None
    await hub.tell(created("o-1"), subject="o-1")
    await eventually(lambda: len(receiver.received) == 1)
    during = receiver.received[0]
    assert during.headers["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)

    ended = await hub.http.post(
        f"{HOOKS}/{made['id']}/rotate-secret", json={"overlapSeconds": 0}, headers=hub.admin
    )
    newest = ended.json()["secret"]
    assert ended.json()["previousSecretExpiresAt"] is None
    await hub.tell(created("o-2"), subject="o-2")
    await eventually(lambda: len(receiver.received) == 2)
    after = receiver.received[1]
    assert after.headers["webhook-signature"].count("v1,") == 1
    Webhook(newest).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(after.body, after.headers)


async def test_an_endpoint_failing_in_a_row_is_paused_and_others_go_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    healthy = Receiver()
    await healthy.start()
    try:
        async with open_hub(
            tmp_path, webhook_breaker_failures=2, webhook_breaker_pause=60, webhook_max_attempts=50
        ) as hub:
            failing = await hub.subscribe(receiver.url)
            receiver.answer = 503
            await hub.subscribe(healthy.url)
            for n in range(3):
                await hub.tell(created(f"o-{n}"), subject=f"o-{n}")

            async def paused() -> dict[str, Any] | None:
                shown = await hub.subscription(failing["id"])
                return shown if shown["circuit"] == "open" else None

            shown = await eventually(paused)
            assert shown["consecutiveFailures"] >= 2 and shown["failingSince"] is not None
            await eventually(lambda: len(healthy.received) == 3)

            async def tried() -> int:
                return sum(len(d["attempts"]) for d in await hub.deliveries(failing["id"]))

            # The attempts claimed before it opened are made and recorded (they fail: the
            # endpoint only answers 204 from now on).
            await asyncio.sleep(0.3)
            before = await tried()
            receiver.answer = 204
            await asyncio.sleep(0.5)  # retries would be due many times over by now
            assert await tried() == before and receiver.received == []  # paused: none tried
            resumed = await hub.http.patch(
                f"{HOOKS}/{failing['id']}", json={"active": True}, headers=hub.admin
            )
            assert resumed.json()["circuit"] == "closed"
            await eventually(lambda: len(receiver.received) == 3)
    finally:
        await healthy.stop()


async def test_a_slow_endpoint_holds_up_only_its_own_deliveries(
    tmp_path: Path, receiver: Receiver
) -> None:
    fast = Receiver()
    await fast.start()
    receiver.delay = 1.0
    try:
        async with open_hub(
            tmp_path, webhook_concurrency=4, webhook_endpoint_concurrency=2, webhook_timeout=5
        ) as hub:
            await hub.subscribe(receiver.url)
            for n in range(12):
                await hub.tell(created(f"o-{n}"), subject=f"o-{n}")
            await eventually(lambda: receiver.most_in_flight == 2)
            await hub.subscribe(fast.url)
            for n in range(12, 24):
                await hub.tell(created(f"o-{n}"), subject=f"o-{n}")
            # 12 at 2 at a time, 1 s each: the slow endpoint needs 6 s; the fast one has its
            # own share of the worker meanwhile.
            await eventually(lambda: len(fast.received) == 12, timeout=5)
            assert len(receiver.received) < 12 and receiver.most_in_flight == 2
    finally:
        await fast.stop()


async def test_targets_on_private_addresses_are_refused_at_creation(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with open_hub(tmp_path, webhook_allow_private_targets=False) as hub:
        for url in [
            receiver.url,
            f"http://localhost:{receiver.port}/hooks",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/h",
            "http://[::1]/h",
            "http://[::ffff:127.0.0.1]/h",
            "http://0.0.0.0/h",
        ]:
            refused = await hub.http.post(
                HOOKS, json={"url": url, "eventTypes": ["*"]}, headers=hub.admin
            )
            assert refused.status_code == 422, (url, refused.text)
            assert "may not be reached" in refused.text
        # A public address is taken (inactive: nothing is sent anywhere).
        taken = await hub.subscribe("https://93.184.216.34/hooks", active=False)
        moved = await hub.http.patch(
            f"{HOOKS}/{taken['id']}", json={"url": receiver.url}, headers=hub.admin
        )
        assert moved.status_code == 422


async def test_a_target_that_comes_to_resolve_privately_is_refused_at_delivery(
    tmp_path: Path, receiver: Receiver
) -> None:
    """DNS rebinding: a name checked public at creation, private later. The subscriptions are
    written directly, as if their names had resolved to public addresses then."""
    async with open_hub(tmp_path, webhook_allow_private_targets=False) as hub:
        async with hub.ctx.db.begin() as conn:
            for url in (f"http://localhost:{receiver.port}/hooks", receiver.url):
                await store.add_subscription(conn, url, ["*"], None, True, "", "whsec_" + "A" * 32)
        await hub.tell(created())

        async def refusals() -> list[Any]:
            async with hub.ctx.db.connect() as conn:
                rows = (await conn.execute(select(attempts.c.error))).all()
            return [r.error for r in rows] if len(rows) >= 2 else []

        errors = await eventually(refusals)
        assert all("refused" in e for e in errors), errors
        assert receiver.received == [] and receiver.refused == []


async def test_the_guarded_resolver_refuses_a_name_of_a_loopback_address() -> None:
    resolver = GuardedResolver()
    try:
        with pytest.raises(RefusedTarget):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
