"""notification embedded (in-process bus, SQLite) with identity and the gateway, mailing
through a real SMTP server on loopback: fed identity's, order's and inventory's events, read
back at the SMTP server and through the inbox routes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from mercato.contracts.events import (
    Address,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderStatusChanged,
    OutOfStock,
    Payload,
    PaymentFailed,
    PricedItem,
    ProductCreated,
    ShipmentCreated,
    StockLow,
)
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.tables import dead_letters, outbox
from mercato.services.gateway.service import service as gateway
from mercato.services.identity.service import service as identity
from mercato.services.notification.outcasts import MailRedrive
from mercato.services.notification.service import service as notification
from mercato.services.notification.tables import notifications
from tests.conftest import eventually
from tests.services.notification.smtp import Mailbox, free_port, html_of, smtp_server, text_of
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = ("root@shop.example", "admin-pass-42")
ADDRESS = Address(name="Ada", line1="1 Main St", city="Paris", postalCode="75001", country="FR")
_people = itertools.count(1)


@dataclass
class Post:
    system: System
    http: httpx.AsyncClient
    admin: dict[str, str]

    @property
    def ctx(self) -> Any:
        return self.system.hosts["notification"].ctx

    async def tell(self, payload: Payload, envelope: Envelope | None = None) -> Envelope:
        envelope = envelope or Envelope(
            type=type(payload).__name__,
            source="mercato/test",
            data=payload.dump(),
            subject=getattr(payload, "orderId", None),
        )
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]
        return envelope

    async def sign_in(self, email: str, password: str) -> dict[str, str]:
        response = await self.http.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['accessToken']}"}

    async def customer(self, name: str = "Ada") -> tuple[str, str, dict[str, str]]:
        email = f"shopper{next(_people)}@example.com"
        made = await self.http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "correct horse 9", "name": name},
        )
        assert made.status_code == 201, made.text
        return made.json()["userId"], email, await self.sign_in(email, "correct horse 9")

    async def rows(self, **where: Any) -> list[Any]:
        query = select(notifications).order_by(notifications.c.created_at)
        for key, value in where.items():
            query = query.where(notifications.c[key] == value)
        async with self.ctx.db.connect() as conn:
            return list((await conn.execute(query)).all())

    async def sent_row(self, user_id: str) -> Any:
        """The user's one notification, once its mail is recorded as sent (the record follows
        the SMTP server's yes, or the file's writing: a mail can be seen a moment before)."""

        async def recorded() -> Any:
            (row,) = await self.rows(user_id=user_id)
            return row if row.mail_status == "sent" else None

        return await eventually(recorded)

    async def sent_events(self) -> list[dict[str, Any]]:
        async with self.ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e.data for e in found if e.type == "NotificationSent"]

    async def dead_letters(self) -> list[Any]:
        async with self.ctx.db.connect() as conn:
            return list((await conn.execute(select(dead_letters))).all())


@asynccontextmanager
async def open_post(data_dir: Path, **settings: Any) -> AsyncIterator[Post]:
    values = {
        "admin_email": ADMIN[0],
        "admin_password": ADMIN[1],
        "mail_retry_base_delay": 0.05,
        **settings,
    }
    async with running([identity, notification, gateway], make_settings(data_dir, **values)) as (
        system,
        http,
    ):
        post = Post(system, http, {})
        post.admin = await post.sign_in(*ADMIN)
        yield post


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    with smtp_server() as found:
        yield found


@pytest.fixture
async def post(tmp_path: Path, mailbox: tuple[Mailbox, int]) -> AsyncIterator[Post]:
    async with open_post(tmp_path, smtp_url=f"smtp://127.0.0.1:{mailbox[1]}") as running_post:
        yield running_post


def order_of(order_id: str, user_id: str) -> OrderCreated:
    return OrderCreated(
        orderId=order_id,
        userId=user_id,
        items=[
            PricedItem(productId="p-cup", quantity=2, price=Decimal("12.50")),
            PricedItem(productId="p-pot", quantity=1, price=Decimal("30")),
        ],
        totalAmount=Decimal("55"),
        status="CREATED",
    )


async def test_a_new_user_gets_one_welcome_mail(post: Post, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    user_id, email, _ = await post.customer(name="Grace <b>Hopper</b>")
    await eventually(lambda: len(box.to(email)) == 1)
    (mail,) = box.to(email)
    assert mail["Subject"] == "Welcome to Mercato"
    assert "Grace <b>Hopper</b>" in text_of(mail)
    assert "Grace &lt;b&gt;Hopper&lt;/b&gt;" in html_of(mail)  # autoescaped
    row = await post.sent_row(user_id)
    assert mail["Message-ID"] == row.message_id
    told = [e for e in await post.sent_events() if e["userId"] == user_id]
    assert told == [
        {"notificationId": row.id, "userId": user_id, "channel": "email", "template": "welcome"}
    ]


async def test_an_orders_life_mails_its_items_and_totals_once_each(
    post: Post, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    user_id, email, _ = await post.customer()
    await post.tell(
        ProductCreated(productId="p-cup", name="Espresso cup", price=Decimal(1), quantity=5)
    )
    # Out of order: the payment's news comes before the order is known.
    paid = OrderStatusChanged(
        orderId="o-1", status="PAID", previousStatus="CREATED", userId=user_id
    )
    paid_env = await post.tell(paid)
    await post.tell(order_of("o-1", user_id))
    await post.tell(ShipmentCreated(shipmentId="s-1", orderId="o-1", address=ADDRESS))
    await post.tell(
        OrderStatusChanged(orderId="o-1", status="DELIVERING", previousStatus="RESERVED")
    )
    await post.tell(OrderStatusChanged(orderId="o-1", status="RESERVED", previousStatus="PAID"))
    await post.tell(OrderCompleted(orderId="o-1", paymentId="pay-1", status="COMPLETED"))
    await post.tell(paid, paid_env)  # redelivered: the same event
    await eventually(lambda: len(box.to(email)) == 5)
    subjects = sorted(box.subjects(email))
    ref = "O-1"
    assert subjects == sorted(
        [
            "Welcome to Mercato",
            f"Order {ref}: payment received",
            f"Order {ref}: shipment S-1 created",
            f"Order {ref} is on its way",
            f"Order {ref} delivered",
        ]
    )
    paid_mail = next(m for m in box.to(email) if "payment received" in str(m["Subject"]))
    text = text_of(paid_mail)
    assert "2 x Espresso cup at 12.50 USD = 25.00 USD" in text
    assert "1 x p-pot at 30.00 USD = 30.00 USD" in text  # no name known: its id
    assert "Total: 55.00 USD" in text
    assert "55.00 USD" in html_of(paid_mail)
    shipped = next(m for m in box.to(email) if "shipment" in str(m["Subject"]))
    assert "1 Main St, 75001 Paris, FR" in text_of(shipped)
    # Replayed by hand (the same event again): nothing more.
    await post.tell(paid, paid_env)
    await post.tell(ShipmentCreated(shipmentId="s-1", orderId="o-1", address=ADDRESS))  # new id
    await eventually(lambda: len(box.to(email)) == 6)
    assert len([s for s in box.subjects(email) if "payment received" in s]) == 1


async def test_cancellation_and_failed_payment_say_why(
    post: Post, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    user_id, email, _ = await post.customer()
    await post.tell(order_of("o-2", user_id))
    await post.tell(PaymentFailed(paymentId="pay-2", orderId="o-2", reason="card declined"))
    await post.tell(OrderCancelled(orderId="o-2", reason="payment failed: card declined"))
    await eventually(lambda: len(box.to(email)) == 3)
    cancelled = next(m for m in box.to(email) if "cancelled" in str(m["Subject"]))
    assert "cancelled: payment failed: card declined." in text_of(cancelled)
    failed = next(m for m in box.to(email) if "payment failed" in str(m["Subject"]))
    assert "card declined" in text_of(failed)


async def test_stock_news_goes_to_every_admin(post: Post, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    second, second_email, _ = await post.customer()
    made = await post.http.put(
        f"/api/v1/users/{second}/roles", json={"roles": ["admin"]}, headers=post.admin
    )
    assert made.status_code == 200, made.text
    await post.tell(ProductCreated(productId="p-9", name="Teapot", price=Decimal(9), quantity=9))
    await eventually(lambda: len(box.to(second_email)) == 1)  # the welcome
    await post.tell(StockLow(productId="p-9", quantity=2, threshold=5))
    await post.tell(OutOfStock(productId="p-9"))

    def stock_news(address: str) -> list[str]:
        return sorted(s for s in box.subjects(address) if "tock" in s)

    await eventually(lambda: len(stock_news(ADMIN[0])) == 2 and len(stock_news(second_email)) == 2)
    assert stock_news(ADMIN[0]) == ["Out of stock: Teapot", "Stock low: Teapot"]
    low = next(m for m in box.to(second_email) if m["Subject"] == "Stock low: Teapot")
    assert "Teapot (p-9) is running low: 2 left (threshold 5)." in text_of(low)
    # A customer gets none.
    _, customer_email, _ = await post.customer()
    await post.tell(OutOfStock(productId="p-9"))
    await eventually(lambda: len(stock_news(ADMIN[0])) == 3)
    assert box.subjects(customer_email) == ["Welcome to Mercato"]


async def test_the_inbox_is_the_users_own(post: Post, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    a, a_email, a_auth = await post.customer()
    b, _, b_auth = await post.customer()
    await eventually(lambda: len(box.to(a_email)) == 1)
    mine = await post.http.get("/api/v1/notifications", headers=a_auth)
    assert mine.status_code == 200, mine.text
    page = mine.json()
    assert page["total"] == 1 and page["page"] == 1 and page["pageSize"] == 20
    (item,) = page["items"]
    assert item["kind"] == "welcome" and item["userId"] == a and item["readAt"] is None
    assert item["subject"] == "Welcome to Mercato" and "<p>" in item["html"]
    # B reads nothing of A's, and marks nothing of A's read.
    theirs = await post.http.get(f"/api/v1/notifications?userId={a}", headers=b_auth)
    assert theirs.status_code == 403
    marked = await post.http.post(f"/api/v1/notifications/{item['id']}/read", headers=b_auth)
    assert marked.status_code == 404
    b_page = (await post.http.get("/api/v1/notifications", headers=b_auth)).json()
    assert all(i["userId"] == b for i in b_page["items"])
    # The admin may read A's.
    admin_view = await post.http.get(f"/api/v1/notifications?userId={a}", headers=post.admin)
    assert [i["id"] for i in admin_view.json()["items"]] == [item["id"]]
    # A marks it read; unread shows none then.
    assert (
        await post.http.post(f"/api/v1/notifications/{item['id']}/read", headers=a_auth)
    ).status_code == 204
    again = (await post.http.get("/api/v1/notifications", headers=a_auth)).json()
    assert again["items"][0]["readAt"] is not None
    unread = (await post.http.get("/api/v1/notifications?unread=true", headers=a_auth)).json()
    assert unread == {"items": [], "page": 1, "pageSize": 20, "total": 0}
    assert (await post.http.get("/api/v1/notifications")).status_code == 401


async def test_smtp_down_retries_then_mail_follows_when_it_returns(tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet
    async with open_post(
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{port}",
        mail_retry_base_delay=0.2,
        mail_max_attempts=20,
    ) as post:
        user_id, email, _ = await post.customer()

        async def tried() -> bool:
            rows = await post.rows(user_id=user_id)
            return bool(rows) and rows[0].attempts >= 2 and rows[0].mail_status == "pending"

        await eventually(tried)
        with smtp_server(port) as (box, _):
            await eventually(lambda: len(box.to(email)) == 1, timeout=20)
            row = await post.sent_row(user_id)
        assert row.attempts >= 3 and len(box.to(email)) == 1


async def test_smtp_down_for_good_ends_as_a_dead_letter(tmp_path: Path) -> None:
    port = free_port()
    async with open_post(
        tmp_path, smtp_url=f"smtp://127.0.0.1:{port}", mail_max_attempts=3
    ) as post:
        user_id, _, auth = await post.customer()

        async def dead() -> bool:
            rows = await post.rows(user_id=user_id)
            return bool(rows) and rows[0].mail_status == "dead"

        await eventually(dead)
        (row,) = await post.rows(user_id=user_id)
        assert row.attempts == 3
        letters = [d for d in await post.dead_letters() if d.consumer == "notification.mail"]
        (letter,) = [d for d in letters if d.event_id == row.event_id]
        assert letter.attempts == 3 and "Connect" in letter.error
        assert b"Welcome to Mercato" in letter.body
        # The inbox has it all the same.
        page = (await post.http.get("/api/v1/notifications", headers=auth)).json()
        assert page["total"] == 1
        # Redriven once SMTP is back: it goes.
        with smtp_server(port) as (box, _):
            redrive = MailRedrive(post.ctx.db)
            assert await redrive.redrive(letter) is None
            await eventually(lambda: len(box.messages) == 1)


async def test_a_send_cut_mid_hand_over_is_never_sent_again(tmp_path: Path) -> None:
    """A crash between the SMTP hand-over and the commit leaves a mail ``sending``, its lease
    run out: it may have arrived, so it is not sent again but kept as a dead letter. A crash
    before the hand-over (``claimed``) is sent, once."""
    port = free_port()  # down at first: the mails wait (an hour) after their first attempt
    async with open_post(
        tmp_path, smtp_url=f"smtp://127.0.0.1:{port}", mail_retry_base_delay=3600
    ) as post:
        user_id, email, _ = await post.customer()
        await post.tell(order_of("o-3", user_id))
        await post.tell(
            OrderCompleted(orderId="o-3", paymentId="pay-3", status="COMPLETED", userId=user_id)
        )
        await post.tell(OrderStatusChanged(orderId="o-3", status="PAID", userId=user_id))

        async def tried_once() -> bool:
            # Each attempt made and its failure recorded (a claimed mail counts its attempt
            # before the SMTP connection is tried: it could still reach the server below).
            rows = await post.rows(user_id=user_id)
            return len(rows) == 3 and all(
                r.attempts == 1 and r.mail_status == "pending" for r in rows
            )

        await eventually(tried_once)
        # As a sender that crashed would leave them (the welcome stays pending, an hour away).
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        async with post.ctx.db.begin() as conn:
            for kind, status in (("order_completed", "sending"), ("order_paid", "claimed")):
                await conn.execute(
                    update(notifications)
                    .where(notifications.c.user_id == user_id, notifications.c.kind == kind)
                    .values(mail_status=status, claim="crashed", claimed_until=long_ago)
                )
        with smtp_server(port) as (box, _):
            await eventually(lambda: len(box.to(email)) == 1)
            await asyncio.sleep(0.5)  # a few more rounds of the sender: nothing else goes
            assert box.subjects(email) == ["Order O-3: payment received"]
        rows = {r.kind: r for r in await post.rows(user_id=user_id)}
        assert rows["order_completed"].mail_status == "unknown"
        assert rows["order_paid"].mail_status == "sent"
        assert rows["welcome"].mail_status == "pending"
        (letter,) = [d for d in await post.dead_letters() if d.event_type == "order_completed"]
        assert "may have arrived" in letter.error and letter.consumer == "notification.mail"


async def test_without_smtp_mail_is_written_as_eml_files_and_kept_in_the_inbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with open_post(tmp_path, log_level="info") as post:
        user_id, email, auth = await post.customer()

        await eventually(lambda: len(sorted((tmp_path / "mail").glob("*.eml"))) == 2)
        row = await post.sent_row(user_id)
        eml = tmp_path / "mail" / f"{row.id}.eml"
        parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert parsed["To"] == f"Ada <{email}>" and parsed["Subject"] == "Welcome to Mercato"
        assert parsed["Message-ID"] == row.message_id
        assert eml.stat().st_mode & 0o777 == 0o600
        told = [e for e in await post.sent_events() if e["userId"] == user_id]
        assert told[0]["channel"] == "file"
        page = (await post.http.get("/api/v1/notifications", headers=auth)).json()
        assert page["total"] == 1
    said = capsys.readouterr()
    assert "no MERCATO_SMTP_URL: mail is not sent" in said.out + said.err
