"""Two replicas of notification on one PostgreSQL database, each consuming, composing and
sending at the same moments: every mail reaches the SMTP server once."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from mercato.contracts.events import (
    OrderCreated,
    OrderStatusChanged,
    Payload,
    PricedItem,
    StockLow,
    UserCreated,
    UserRolesUpdated,
)
from mercato.platform.bus.memory import MemoryBus
from mercato.platform.runtime.service import ServiceContext
from mercato.services.notification import composer, sender
from mercato.services.notification.service import service as notification
from tests.services.notification.smtp import smtp_server
from tests.services.replicas import meet, message, replicas
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.postgres

USERS = 12


async def test_two_replicas_never_send_one_mail_twice(
    postgres_template: str, tmp_path: Path
) -> None:
    with smtp_server() as (box, port):
        settings = make_settings(
            tmp_path, smtp_url=f"smtp://127.0.0.1:{port}", database_url=postgres_template
        )
        async with replicas(notification, postgres_template, count=2) as two:
            contexts = [ServiceContext(notification, settings, r.db, MemoryBus()) for r in two.of]
            events: list[Payload] = [
                UserCreated(userId=f"u-{i}", email=f"u{i}@example.com", name=f"U{i}")
                for i in range(USERS)
            ]
            events += [UserRolesUpdated(userId="u-0", roles=["admin"])]
            events += [
                OrderCreated(
                    orderId=f"o-{i}",
                    userId=f"u-{i}",
                    status="CREATED",
                    items=[PricedItem(productId="p", quantity=1, price=Decimal(3))],
                    totalAmount=Decimal(3),
                )
                for i in range(USERS)
            ]
            # Each event delivered to both replicas at once (a redelivery racing the first).
            batch = [message(e) for e in events]
            paid = [
                message(OrderStatusChanged(orderId=f"o-{i}", status="PAID")) for i in range(USERS)
            ]
            low = message(StockLow(productId="p", quantity=1, threshold=5))
            await asyncio.gather(*(r.handle(*batch) for r in two.of))
            await asyncio.gather(*(r.handle(*paid, low) for r in two.of))

            # Both compose at the same moments, and both claim the same pending mails at the
            # same moment: a session of the test's own holds them until both have asked.
            for _ in range(5):
                await asyncio.gather(*(composer.compose_due(ctx) for ctx in contexts))
            pending = "SELECT id FROM notifications WHERE mail_status = 'pending' FOR UPDATE"
            await meet(
                postgres_template,
                "notification",
                pending,
                [],
                *(sender.send_due(ctx) for ctx in contexts),
            )

            async def work(ctx: ServiceContext) -> None:
                for _ in range(10):
                    await asyncio.gather(composer.compose_due(ctx), sender.send_due(ctx))
                    await asyncio.sleep(0.01)

            await asyncio.gather(*(work(ctx) for ctx in contexts))
            for ctx in contexts:
                await sender.send_due(ctx)
                await ctx.close_channels()

    per_message = Counter(str(m["Message-ID"]) for m in box.messages)
    assert all(count == 1 for count in per_message.values()), per_message
    per_recipient = Counter(
        (r[0], str(m["X-Mercato-Kind"])) for m, r in zip(box.messages, box.recipients, strict=True)
    )
    assert all(count == 1 for count in per_recipient.values()), per_recipient
    # A welcome and a payment per user, and the admin's stock warning.
    assert len(box.messages) == USERS * 2 + 1
