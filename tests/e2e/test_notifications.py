"""An order's life, end to end through the public API (embedded, every service), as its
customer hears of it: mails at a real SMTP server on loopback (aiosmtpd) and entries in the
inbox, once each; with the SMTP server down the order still completes, and its mail follows
when the server is back."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.conftest import eventually
from tests.e2e.test_saga import DECLINED_CARD, Shop, card, open_shop
from tests.services.notification.smtp import Mailbox, free_port, smtp_server, text_of


def user_of(token_headers: dict[str, str]) -> str:
    payload = token_headers["Authorization"].split()[1].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


async def signed_up(shop: Shop) -> tuple[dict[str, str], str]:
    who = await shop.customer()
    me = (await shop.http.get("/api/v1/users/me", headers=who)).json()
    return who, str(me["email"])


async def delivered_order(shop: Shop, who: dict[str, str]) -> str:
    cup = await shop.product(price=12.5, quantity=10)
    order_id = str((await shop.place(who, [(cup, 2)]))["orderId"])
    shipment = await shop.shipment(who, order_id, "delivery")
    await shop.reaches(who, order_id, "DELIVERING")
    await shop.carrier(shipment["shipmentId"], "delivered")
    await shop.reaches(who, order_id, "COMPLETED")
    return order_id


async def arrived(box: Mailbox, email: str, count: int) -> None:
    """``count`` mails at ``email``, no more (a second mail for one event would be a bug)."""
    try:
        await eventually(lambda: len(box.to(email)) >= count, timeout=30)
    except AssertionError:
        raise AssertionError(f"{count} mails expected, came: {box.subjects(email)}") from None
    assert len(box.to(email)) == count, box.subjects(email)


async def inbox_holds(shop: Shop, who: dict[str, str], count: int) -> None:
    async def check() -> bool:
        inbox = (await shop.http.get("/api/v1/notifications", headers=who)).json()
        return bool(inbox["total"] == count)

    await eventually(check, timeout=30)


EXPECTED = ["delivered", "is on its way", "payment received", "shipment", "Welcome"]


def heard(box: Mailbox, email: str) -> list[str]:
    """Which of the expected mails arrived, one entry per mail."""
    return sorted(next(e for e in EXPECTED if e in subject) for subject in box.subjects(email))


async def test_an_orders_life_mails_its_customer_once_each(tmp_path: Path) -> None:
    with smtp_server() as (box, port):
        async for shop in open_shop(tmp_path, smtp_url=f"smtp://127.0.0.1:{port}"):
            who, email = await signed_up(shop)
            order_id = await delivered_order(shop, who)
            await arrived(box, email, 5)
            assert heard(box, email) == sorted(EXPECTED)
            paid = next(m for m in box.to(email) if "payment received" in str(m["Subject"]))
            text = text_of(paid)
            assert "2 x Espresso cup at 12.50 USD = 25.00 USD" in text
            assert "Total: 25.00 USD" in text and order_id in text
            await inbox_holds(shop, who, 5)
            inbox = (await shop.http.get("/api/v1/notifications", headers=who)).json()
            assert sorted(i["kind"] for i in inbox["items"]) == [
                "order_completed",
                "order_delivering",
                "order_paid",
                "shipment_created",
                "welcome",
            ]
            # A declined card: told that the payment failed and the order is cancelled, why.
            cup = await shop.product(price=3, quantity=5)
            declined = await shop.place(who, [(cup, 1)], payment=card(DECLINED_CARD))
            await shop.reaches(who, declined["orderId"], "CANCELLED")
            await arrived(box, email, 7)
            cancelled = next(m for m in box.to(email) if "cancelled" in str(m["Subject"]))
            assert "declined" in text_of(cancelled)
            # Another customer reads none of it.
            other, _ = await signed_up(shop)
            theirs = await shop.http.get(
                "/api/v1/notifications", params={"userId": user_of(who)}, headers=other
            )
            assert theirs.status_code == 403


async def test_smtp_down_holds_up_no_order_and_mail_follows_when_it_returns(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there yet
    async for shop in open_shop(
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{port}",
        mail_retry_base_delay=0.2,
        mail_max_attempts=30,
    ):
        who, email = await signed_up(shop)
        await delivered_order(shop, who)  # completes while no mail can go
        await inbox_holds(shop, who, 5)  # the inbox has them all the same
        with smtp_server(port) as (box, _):
            await arrived(box, email, 5)
            assert heard(box, email) == sorted(EXPECTED)
