"""The wallet's ledger and what a payment shows: every change of a balance is an entry (a
top-up with its reason, an order's payment, its refund, an admin's debit, a bulk set-up), the
balance is always their sum, and a payment says what was authorized, captured and refunded."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import func, select

from mercato.api.common.v1.common_pb2 import Money, PageRequest
from mercato.api.payment.v1 import payment_pb2 as pb
from mercato.contracts.events import OrderCancelled
from mercato.services.payment.tables import wallet_entries, wallets
from tests.services.payment.conftest import PaymentRig, order
from tests.services.payment.test_payment import settled

ADMIN = ("admin",)


async def wallet(rig: PaymentRig, user: str, entries: int = 50) -> pb.WalletView:
    request = pb.GetWalletRequest(user_id=user, entries=entries)
    reply: pb.WalletView = await rig.stub.GetWallet(request, metadata=rig.token("a", ADMIN))
    return reply


async def credit(
    rig: PaymentRig, user: str, amount: str, reason: str = "", key: str | None = None
) -> pb.WalletView:
    request = pb.TopUpWalletRequest(user_id=user, amount=Money(amount=amount), reason=reason)
    metadata = rig.token("a", ADMIN) + ([("idempotency-key", key)] if key else [])
    reply: pb.WalletView = await rig.stub.TopUpWallet(request, metadata=metadata)
    return reply


async def balance_is_sum_of_entries(rig: PaymentRig) -> None:
    async with rig.ctx.db.connect() as conn:
        balances = {r.user_id: r.balance for r in await conn.execute(select(wallets))}
        sums = await conn.execute(
            select(wallet_entries.c.user_id, func.sum(wallet_entries.c.amount)).group_by(
                wallet_entries.c.user_id
            )
        )
        assert {u: int(s) for u, s in sums} == balances


def lines(view: pb.WalletView) -> list[tuple[str, Decimal, str, str]]:
    return [(e.kind, Decimal(e.amount.amount), e.order_id, e.reason) for e in view.entries]


async def test_a_wallet_order_and_its_cancellation_are_on_the_ledger(rig: PaymentRig) -> None:
    await credit(rig, "u1", "50", reason="welcome gift")
    await rig.feed(order("o1", "u1", "20", method="wallet"))
    await settled(rig, "o1", "PaymentCompleted")
    await rig.feed(OrderCancelled(orderId="o1", reason="changed my mind", userId="u1"))
    await settled(rig, "o1", "PaymentRefunded")
    view = await wallet(rig, "u1")
    assert Decimal(view.balance.amount) == Decimal(50)
    assert lines(view) == [
        ("refund", Decimal(20), "o1", "changed my mind"),
        ("payment", Decimal(-20), "o1", ""),
        ("credit", Decimal(50), "", "welcome gift"),
    ]
    assert view.entries[1].payment_id and view.entries[0].payment_id == view.entries[1].payment_id
    assert len((await wallet(rig, "u1", entries=1)).entries) == 1
    assert len((await wallet(rig, "u1", entries=0)).entries) == 0
    await balance_is_sum_of_entries(rig)


async def test_a_refused_wallet_payment_leaves_no_entry(rig: PaymentRig) -> None:
    await credit(rig, "u1", "5")
    await rig.feed(order("o1", "u1", "20", method="wallet"))
    await settled(rig, "o1", "PaymentFailed")
    assert [e.kind for e in (await wallet(rig, "u1")).entries] == ["credit"]
    await balance_is_sum_of_entries(rig)


async def test_debits_and_set_ups_are_on_the_ledger(rig: PaymentRig) -> None:
    await credit(rig, "u1", "30")
    request = pb.DebitWalletRequest(user_id="u1", amount=Money(amount="10"), reason="goodwill")
    await rig.stub.DebitWallet(request, metadata=rig.token("a", ADMIN))
    setup = pb.SetUpWalletsRequest(user_ids=["u1", "u2", "u3"], balance=Money(amount="25"))
    await rig.stub.SetUpWallets(setup, metadata=rig.token("a", ADMIN))
    await rig.stub.SetUpWallets(setup, metadata=rig.token("a", ADMIN))  # changes nothing
    assert lines(await wallet(rig, "u1")) == [
        ("setUp", Decimal(5), "", ""),
        ("debit", Decimal(-10), "", "goodwill"),
        ("credit", Decimal(30), "", ""),
    ]
    assert lines(await wallet(rig, "u2")) == [("setUp", Decimal(25), "", "")]
    await balance_is_sum_of_entries(rig)


async def test_concurrent_credits_all_count_even_on_a_new_wallet(rig: PaymentRig) -> None:
    await asyncio.gather(*(credit(rig, "u1", "1.25") for _ in range(10)))
    view = await wallet(rig, "u1")
    assert (Decimal(view.balance.amount), len(view.entries)) == (Decimal("12.5"), 10)
    await balance_is_sum_of_entries(rig)


async def test_a_credit_with_the_same_key_counts_once(rig: PaymentRig) -> None:
    first = await credit(rig, "u1", "10", key="k1")
    again = await credit(rig, "u1", "10", key="k1")
    assert first == again and len(first.entries) == 0  # no entries asked for
    assert Decimal((await wallet(rig, "u1")).balance.amount) == Decimal(10)


async def test_a_bad_entry_count_is_refused(rig: PaymentRig) -> None:
    for entries in (-1, 501):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await wallet(rig, "u1", entries=entries)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_payment_shows_what_was_authorized_captured_and_refunded(
    rig: PaymentRig,
) -> None:
    good = await rig.tokenize("u1", "4242424242424242")
    flaky = await rig.tokenize("u1", "4000000000000119")
    declined = await rig.tokenize("u1", "4000000000000002")
    await rig.feed(order("paid", "u1", "12.5", token=good))
    await rig.feed(order("held", "u1", "7", token=flaky))
    await rig.feed(order("no", "u1", "3", token=declined))
    for oid, outcome in (("paid", "PaymentCompleted"), ("held", "PaymentFailed")):
        await settled(rig, oid, outcome)
    await settled(rig, "no", "PaymentFailed")
    await rig.feed(OrderCancelled(orderId="paid", reason="too slow", userId="u1"))
    await settled(rig, "paid", "PaymentRefunded")

    async def shown(order_id: str) -> tuple[str, Decimal, Decimal, Decimal, list[str]]:
        request = pb.GetPaymentRequest(order_id=order_id)
        p = await rig.stub.GetPayment(request, metadata=rig.token("u1"))
        assert p.last4 and p.method == "card"
        amounts = (Decimal(m.amount) for m in (p.authorized, p.captured, p.refunded))
        return (p.status, *amounts, [r.reason for r in p.refunds])  # type: ignore[return-value]

    assert await shown("paid") == (
        "REFUNDED",
        Decimal("12.5"),
        Decimal("12.5"),
        Decimal("12.5"),
        ["too slow"],
    )
    assert await shown("held") == ("AUTHORIZED", Decimal(7), Decimal(0), Decimal(0), [])
    assert await shown("no") == ("FAILED", Decimal(0), Decimal(0), Decimal(0), [])


async def test_a_payment_list_by_order_shows_nothing_of_someone_elses(rig: PaymentRig) -> None:
    token = await rig.tokenize("u1", "4242424242424242")
    for oid in ("o1", "o2"):
        await rig.feed(order(oid, "u1", "10", token=token))
        await settled(rig, oid, "PaymentCompleted")

    async def listed(user: str, roles: tuple[str, ...] = ("customer",)) -> list[str]:
        request = pb.ListPaymentsRequest(order_id="o1", page=PageRequest(page=1, page_size=10))
        reply = await rig.stub.ListPayments(request, metadata=rig.token(user, roles))
        return [p.order_id for p in reply.payments]

    assert await listed("u1") == ["o1"]
    assert await listed("admin", ADMIN) == ["o1"]
    assert await listed("u2") == []


async def test_two_credits_at_once_on_postgresql_both_count(pg_rig: PaymentRig) -> None:
    # The first credits race to open the wallet: the upsert makes the losers add to it.
    await asyncio.gather(*(credit(pg_rig, "u1", "2") for _ in range(6)))
    view = await wallet(pg_rig, "u1")
    assert (Decimal(view.balance.amount), len(view.entries)) == (Decimal(12), 6)
    await balance_is_sum_of_entries(pg_rig)
