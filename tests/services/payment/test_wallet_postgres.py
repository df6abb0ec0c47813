"""The wallet on PostgreSQL, where payments really run at once: never below zero."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from mercato.services.payment.handlers import charge_order
from mercato.services.payment.tables import wallets
from tests.services.payment.conftest import PaymentRig, order


async def test_concurrent_wallet_payments_never_overdraw(pg_rig: PaymentRig) -> None:
    await pg_rig.top_up("u1", "100")

    async def pay(i: int) -> None:
        async with pg_rig.ctx.transaction() as uow:
            await charge_order(order(f"o{i}", "u1", "30", method="wallet"), uow)

    await asyncio.gather(*(pay(i) for i in range(12)))
    assert len(await pg_rig.events("PaymentCompleted")) == 3
    assert len(await pg_rig.events("PaymentFailed")) == 9
    async with pg_rig.ctx.engine.connect() as conn:
        assert (await conn.execute(select(wallets.c.balance))).scalar_one() == 10 * 10_000
