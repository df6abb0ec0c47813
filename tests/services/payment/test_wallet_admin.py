"""payment's admin wallet calls: DebitWallet (conditional, idempotent per key), SetUpWallets
(bulk), TopUpWallet's existing_only and GetWallet's exists."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest

from mercato.api.common.v1.common_pb2 import Money
from mercato.api.payment.v1 import payment_pb2 as pb
from tests.services.payment.conftest import PaymentRig


def admin(rig: PaymentRig, key: str | None = None) -> list[tuple[str, str]]:
    metadata = rig.token("admin-1", ("admin",))
    return metadata + ([("idempotency-key", key)] if key else [])


async def debit(rig: PaymentRig, user: str, amount: str, key: str | None = None) -> pb.WalletView:
    request = pb.DebitWalletRequest(user_id=user, amount=Money(amount=amount))
    reply: pb.WalletView = await rig.stub.DebitWallet(request, metadata=admin(rig, key))
    return reply


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def balance(rig: PaymentRig, user: str) -> tuple[Decimal, bool]:
    wallet = await rig.stub.GetWallet(pb.GetWalletRequest(user_id=user), metadata=admin(rig))
    return Decimal(wallet.balance.amount), wallet.exists


async def test_debit_takes_credit_only_when_the_wallet_holds_enough(rig: PaymentRig) -> None:
    await rig.top_up("u1", "10")
    assert Decimal((await debit(rig, "u1", "7.5")).balance.amount) == Decimal("2.5")
    assert await code_of(debit(rig, "u1", "3")) == grpc.StatusCode.FAILED_PRECONDITION
    assert await code_of(debit(rig, "nobody", "1")) == grpc.StatusCode.NOT_FOUND
    for bad in ("0", "-1", "abc", "Infinity", "0.00001", "1e20"):
        assert await code_of(debit(rig, "u1", bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await balance(rig, "u1") == (Decimal("2.5"), True)
    request = pb.DebitWalletRequest(user_id="u1", amount=Money(amount="1"))
    denied = rig.stub.DebitWallet(request, metadata=rig.token("u1"))
    assert await code_of(denied) == grpc.StatusCode.PERMISSION_DENIED


async def test_debit_with_the_same_key_is_taken_once(rig: PaymentRig) -> None:
    await rig.top_up("u1", "10")
    first = await debit(rig, "u1", "4", key="k1")
    again = await debit(rig, "u1", "4", key="k1")
    assert first == again
    assert await balance(rig, "u1") == (Decimal(6), True)
    reused = debit(rig, "u1", "5", key="k1")
    assert await code_of(reused) == grpc.StatusCode.INVALID_ARGUMENT
    # A refused debit leaves its key unused: the retry is judged afresh.
    assert await code_of(debit(rig, "u1", "100", key="k2")) == grpc.StatusCode.FAILED_PRECONDITION
    await rig.top_up("u1", "100")
    assert Decimal((await debit(rig, "u1", "100", key="k2")).balance.amount) == Decimal(6)


async def test_concurrent_debits_never_overdraw(rig: PaymentRig) -> None:
    await rig.top_up("u1", "5")
    outcomes = await asyncio.gather(
        *(debit(rig, "u1", "1") for _ in range(12)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(refused) == 7
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert await balance(rig, "u1") == (Decimal(0), True)


async def test_set_up_wallets_makes_or_resets_each_wallet(rig: PaymentRig) -> None:
    await rig.top_up("u0", "99")
    users = [f"u{i}" for i in range(1000)]
    request = pb.SetUpWalletsRequest(user_ids=users, balance=Money(amount="25"))
    reply = await rig.stub.SetUpWallets(request, metadata=admin(rig))
    assert reply.count == 1000
    assert await balance(rig, "u0") == (Decimal(25), True)
    assert await balance(rig, "u999") == (Decimal(25), True)
    empty = pb.SetUpWalletsRequest(user_ids=["fresh"], balance=Money(amount="0"))
    await rig.stub.SetUpWallets(empty, metadata=admin(rig))
    assert await balance(rig, "fresh") == (Decimal(0), True)
    assert await balance(rig, "never") == (Decimal(0), False)
    for bad in (
        pb.SetUpWalletsRequest(user_ids=[], balance=Money(amount="1")),
        pb.SetUpWalletsRequest(user_ids=[*users, "u1000"], balance=Money(amount="1")),
        pb.SetUpWalletsRequest(user_ids=["x"], balance=Money(amount="-1")),
        pb.SetUpWalletsRequest(user_ids=[""], balance=Money(amount="1")),
    ):
        assert await code_of(rig.stub.SetUpWallets(bad, metadata=admin(rig))) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    customer = rig.stub.SetUpWallets(empty, metadata=rig.token("u1"))
    assert await code_of(customer) == grpc.StatusCode.PERMISSION_DENIED


async def test_top_up_existing_only_opens_no_wallet(rig: PaymentRig) -> None:
    request = pb.TopUpWalletRequest(user_id="u9", amount=Money(amount="5"), existing_only=True)
    top_up = rig.stub.TopUpWallet(request, metadata=admin(rig))
    assert await code_of(top_up) == grpc.StatusCode.NOT_FOUND
    assert await balance(rig, "u9") == (Decimal(0), False)
    await rig.top_up("u9", "1")
    reply = await rig.stub.TopUpWallet(request, metadata=admin(rig))
    assert (Decimal(reply.balance.amount), reply.exists) == (Decimal(6), True)


async def test_concurrent_debits_never_overdraw_on_postgres(pg_rig: PaymentRig) -> None:
    await pg_rig.stub.SetUpWallets(
        pb.SetUpWalletsRequest(user_ids=["u1", "u2"], balance=Money(amount="5")),
        metadata=admin(pg_rig),
    )
    outcomes = await asyncio.gather(
        *(debit(pg_rig, "u1", "1") for _ in range(12)), return_exceptions=True
    )
    assert sum(isinstance(o, grpc.aio.AioRpcError) for o in outcomes) == 7
    assert await balance(pg_rig, "u1") == (Decimal(0), True)
    assert await balance(pg_rig, "u2") == (Decimal(5), True)
