"""payment: the sandbox cards, refund vs void, duplicates, reordering, the wallet, no card data."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import select

from mercato.api.payment.v1 import payment_pb2 as pb
from mercato.contracts.events import OrderCancelled
from mercato.services.payment.handlers import charge_order
from mercato.services.payment.tables import cards, payments, wallets
from tests.conftest import eventually
from tests.services.payment.conftest import PaymentRig, order

CARDS = [
    ("4242424242424242", "CAPTURED", None),
    ("4000000000000002", "FAILED", "card declined"),
    ("4000000000009995", "FAILED", "insufficient funds"),
    # Authorized, then the capture fails: the hold is voided at once, nothing stays held.
    ("4000000000000119", "VOIDED", "processing error"),
]


async def settled(rig: PaymentRig, order_id: str, *types: str) -> list[str]:
    async def check() -> list[str] | None:
        found = [e.type for e in await rig.events() if e.subject == order_id]
        return found if all(t in found for t in types) else None

    result: list[str] = await eventually(check)
    return result


async def payment_row(rig: PaymentRig, order_id: str):  # type: ignore[no-untyped-def]
    async with rig.ctx.db.connect() as conn:
        return (await conn.execute(select(payments).where(payments.c.order_id == order_id))).one()


@pytest.mark.parametrize(("number", "status", "reason"), CARDS)
async def test_each_sandbox_card(rig: PaymentRig, number: str, status: str, reason: str) -> None:
    token = await rig.tokenize("u1", number)
    await rig.feed(order("o1", "u1", "25.50", token=token))
    last = "PaymentCompleted" if reason is None else "PaymentFailed"
    assert await settled(rig, "o1", last) == ["PaymentInitiated", last]
    row = await payment_row(rig, "o1")
    assert (row.status, row.reason, row.last4) == (status, reason, number[-4:])
    if reason is not None:
        [failed] = await rig.events("PaymentFailed")
        assert failed.data["reason"] == reason


async def test_luhn_invalid_and_expired_cards_are_refused(rig: PaymentRig) -> None:
    for number, expiry in [("4242424242424241", "12/39"), ("4242424242424242", "01/20")]:
        request = pb.TokenizeCardRequest(card_number=number, expiry=expiry, cvc="1", holder="A")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rig.stub.TokenizeCard(request, metadata=rig.token("u1"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with rig.ctx.db.connect() as conn:
        assert (await conn.execute(select(cards))).all() == []


async def test_no_method_or_unknown_token_fails_clearly(rig: PaymentRig) -> None:
    await rig.feed(order("o1", "u1", "5", method=None))
    await rig.feed(order("o2", "u1", "5", token="tok_nope"))
    other = await rig.tokenize("u2", "4242424242424242")
    await rig.feed(order("o3", "u1", "5", token=other))
    for oid in ("o1", "o2", "o3"):
        await settled(rig, oid, "PaymentFailed")
    reasons = {e.subject: e.data["reason"] for e in await rig.events("PaymentFailed")}
    assert reasons == {
        "o1": "the order has no payment method",
        "o2": "unknown card token tok_nope",
        "o3": "the card token belongs to another user",
    }


async def test_cancel_refunds_a_capture_once_and_leaves_a_failure(rig: PaymentRig) -> None:
    good = await rig.tokenize("u1", "4242424242424242")
    flaky = await rig.tokenize("u1", "4000000000000119")
    await rig.feed(order("paid", "u1", "10", token=good))
    await rig.feed(order("held", "u1", "10", token=flaky))
    await settled(rig, "paid", "PaymentCompleted")
    await settled(rig, "held", "PaymentFailed")
    for oid in ("paid", "held"):
        cancel = await rig.feed(OrderCancelled(orderId=oid, reason="customer", userId="u1"))
        await rig.feed(cancel)  # redelivered: still one answer
        await rig.feed(OrderCancelled(orderId=oid, reason="again", userId="u1"))  # a second one
    await eventually(lambda: _status(rig, "paid", "REFUNDED"))
    assert await _status(rig, "held", "VOIDED")
    [refund] = await rig.events("PaymentRefunded")
    assert (refund.subject, Decimal(str(refund.data["amount"]))) == ("paid", Decimal(10))
    assert await rig.events("PaymentCancelled") == []


async def _status(rig: PaymentRig, order_id: str, status: str) -> bool:
    return bool((await payment_row(rig, order_id)).status == status)


async def test_duplicate_order_created_captures_once(rig: PaymentRig) -> None:
    token = await rig.tokenize("u1", "4242424242424242")
    created = order("o1", "u1", "10", token=token)
    first = await rig.feed(created)
    await rig.feed(first)  # the same envelope again: the inbox drops it
    await rig.feed(created)  # a new envelope for the same order: the order's row stops it
    async with rig.ctx.transaction() as uow:  # and straight into the handler, past the inbox
        await charge_order(created, uow)
    await settled(rig, "o1", "PaymentCompleted")
    await asyncio.sleep(0.3)  # let any redelivery run (a second capture would show below)
    assert len(await rig.events("PaymentCompleted")) == 1
    assert len(await rig.events("PaymentInitiated")) == 1
    async with rig.ctx.db.connect() as conn:
        assert len((await conn.execute(select(payments))).all()) == 1


async def test_cancel_before_create_never_charges(rig: PaymentRig) -> None:
    await rig.top_up("u1", "50")
    await rig.feed(OrderCancelled(orderId="o1", reason="timeout", userId="u1"))
    await eventually(lambda: _status(rig, "o1", "CANCELLED"))
    async with rig.ctx.transaction() as uow:
        await charge_order(order("o1", "u1", "20", method="wallet"), uow)
        assert uow.events == []
    # The cancellation's answer: nothing was charged, and nothing will be.
    assert [e.type for e in await rig.events()] == ["PaymentCancelled"]
    wallet = await rig.stub.GetWallet(pb.GetWalletRequest(), metadata=rig.token("u1"))
    assert Decimal(wallet.balance.amount) == Decimal(50)


async def test_wallet_never_negative_under_concurrent_payments(rig: PaymentRig) -> None:
    await rig.top_up("u1", "100")

    async def pay(i: int) -> None:
        async with rig.ctx.transaction() as uow:
            await charge_order(order(f"o{i}", "u1", "30", method="wallet"), uow)

    await asyncio.gather(*(pay(i) for i in range(8)))
    completed = await rig.events("PaymentCompleted")
    failed = await rig.events("PaymentFailed")
    assert (len(completed), len(failed)) == (3, 5)
    assert {e.data["reason"] for e in failed} == {"insufficient wallet credit"}
    async with rig.ctx.db.connect() as conn:
        balance = (await conn.execute(select(wallets.c.balance))).scalar_one()
    assert balance == 10 * 10_000  # 100 - 3 * 30, in ten-thousandths
    # A refund gives the credit back.
    await rig.feed(OrderCancelled(orderId=completed[0].subject or "", reason="x", userId="u1"))
    await settled(rig, completed[0].subject or "", "PaymentRefunded")
    wallet = await rig.stub.GetWallet(pb.GetWalletRequest(), metadata=rig.token("u1"))
    assert Decimal(wallet.balance.amount) == Decimal(40)


async def test_card_number_and_cvc_are_never_stored(rig: PaymentRig) -> None:
    token = await rig.tokenize("u1", "4242424242424242")
    await rig.feed(order("o1", "u1", "10", token=token))
    await settled(rig, "o1", "PaymentCompleted")
    async with rig.ctx.db.connect() as conn:
        dump = repr([(await conn.execute(select(t))).all() for t in (cards, payments)])
        dump += repr((await conn.execute(select(rig_outbox()))).all())
    assert "4242424242424242" not in dump
    assert "424242424242" not in dump
    assert "4242" in dump  # the last four are kept


def rig_outbox():  # type: ignore[no-untyped-def]
    from mercato.platform.storage.tables import outbox

    return outbox


async def test_reads_are_scoped_and_top_up_is_admin_only(rig: PaymentRig) -> None:
    token = await rig.tokenize("u1", "4242424242424242")
    await rig.feed(order("o1", "u1", "10", token=token))
    await settled(rig, "o1", "PaymentCompleted")
    mine = await rig.stub.GetPayment(pb.GetPaymentRequest(order_id="o1"), metadata=rig.token("u1"))
    assert (mine.status, mine.amount.amount, mine.last4) == ("CAPTURED", "10.00", "4242")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rig.stub.GetPayment(pb.GetPaymentRequest(order_id="o1"), metadata=rig.token("u2"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await rig.stub.ListPayments(pb.ListPaymentsRequest(), metadata=rig.token("u2"))
    assert list(listed.payments) == []
    admin = rig.token("a", ("admin",))
    listed = await rig.stub.ListPayments(pb.ListPaymentsRequest(), metadata=admin)
    assert [p.order_id for p in listed.payments] == ["o1"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rig.stub.TopUpWallet(pb.TopUpWalletRequest(user_id="u1"), metadata=rig.token("u1"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
