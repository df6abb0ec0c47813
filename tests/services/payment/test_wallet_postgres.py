"""The wallet on PostgreSQL, where payments really run at once: never below zero."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from mercato.services.payment.handlers import charge_order
from mercato.services.payment.tables import payments, wallets
from tests.services.payment.conftest import PaymentRig, order


async def test_concurrent_wallet_payments_never_overdraw(pg_rig: PaymentRig) -> None:
    await pg_rig.top_up("u1", "100")

    async def pay(i: int) -> None:
        async with pg_rig.ctx.transaction() as uow:
            await charge_order(order(f"o{i}", "u1", "30", method="wallet"), uow)

    await asyncio.gather(*(pay(i) for i in range(12)))
    assert len(await pg_rig.events("PaymentCompleted")) == 3
    assert len(await pg_rig.events("PaymentFailed")) == 9
    async with pg_rig.ctx.db.connect() as conn:
        assert (await conn.execute(select(wallets.c.balance))).scalar_one() == 10 * 10_000


async def test_racing_duplicates_of_one_order_capture_once(pg_rig: PaymentRig) -> None:
    # The same OrderCreated handled by several transactions at once (past the inbox): the
    # payment row's ON CONFLICT DO NOTHING lets one charge; the others wait, then do nothing.
    await pg_rig.top_up("u1", "100")

    async def pay() -> None:
        async with pg_rig.ctx.transaction() as uow:
            await charge_order(order("o1", "u1", "30", method="wallet"), uow)

    await asyncio.gather(*(pay() for _ in range(6)))
    assert len(await pg_rig.events("PaymentInitiated")) == 1
    assert len(await pg_rig.events("PaymentCompleted")) == 1
    async with pg_rig.ctx.db.connect() as conn:
        assert (await conn.execute(select(wallets.c.balance))).scalar_one() == 70 * 10_000
        assert len((await conn.execute(select(payments))).all()) == 1
