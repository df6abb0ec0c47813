"""Payments and wallets: an order's payment (its owner or an admin), my wallet and its
ledger, and an admin's credit to a user's wallet.

The amounts a payment shows are what the provider authorized, captured and refunded; a
refund says why and when. A wallet's balance is the sum of its ledger's entries.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, PlainSerializer

from mercato.api.common.v1.common_pb2 import Money, PageRequest
from mercato.api.identity.v1 import identity_pb2
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.api.payment.v1 import payment_pb2 as pb
from mercato.api.payment.v1.payment_pb2_grpc import PaymentStub
from mercato.services.gateway.inputs import Input, Number
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.security import AdminCaller, CurrentCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

router = APIRouter(prefix="/api/v1/payments", tags=["payments"], responses=PROBLEM_RESPONSES)
wallets = APIRouter(tags=["wallets"], responses=PROBLEM_RESPONSES)

Id = Annotated[str, Path(min_length=1, max_length=200)]
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
# A tombstone the payment service keeps for an order cancelled before it was charged: not a
# payment anyone made.
_NOT_A_PAYMENT = "CANCELLED"
MAX_CREDIT = 1_000_000


class Refund(BaseModel):
    amount: Amount
    reason: str
    at: str


class Payment(BaseModel):
    paymentId: str
    orderId: str
    userId: str
    method: str | None = Field(description="card or wallet")
    last4: str | None
    amount: Amount
    currency: str
    status: str = Field(description="INITIATED, AUTHORIZED, CAPTURED, FAILED, REFUNDED, VOIDED")
    reason: str | None = Field(description="Why it failed, or was refunded or voided")
    authorized: Amount
    captured: Amount
    refunded: Amount
    refunds: list[Refund]
    createdAt: str
    updatedAt: str


class PaymentList(BaseModel):
    items: list[Payment]


def _amount(money: Money) -> Decimal:
    return Decimal(money.amount or "0")


def payment_of(p: pb.PaymentView) -> Payment:
    return Payment(
        paymentId=p.payment_id,
        orderId=p.order_id,
        userId=p.user_id,
        method=p.method or None,
        last4=p.last4 or None,
        amount=_amount(p.amount),
        currency=p.amount.currency,
        status=p.status,
        reason=p.reason or None,
        authorized=_amount(p.authorized),
        captured=_amount(p.captured),
        refunded=_amount(p.refunded),
        refunds=[Refund(amount=_amount(r.amount), reason=r.reason, at=r.at) for r in p.refunds],
        createdAt=p.created_at,
        updatedAt=p.updated_at,
    )


@router.get("", summary="The payment of one of my orders (any order for an admin)")
async def list_payments(
    caller: CurrentCaller,
    upstream: Upstream,
    orderId: Annotated[str, Query(min_length=1, max_length=200)],
) -> PaymentList:
    message = pb.ListPaymentsRequest(order_id=orderId, page=PageRequest(page=1, page_size=100))
    reply = await upstream.call("payment", PaymentStub, "ListPayments", message)
    return PaymentList(items=[payment_of(p) for p in reply.payments if p.status != _NOT_A_PAYMENT])


@router.get("/{paymentId}", summary="One of my payments (anyone's for an admin)")
async def get_payment(paymentId: Id, caller: CurrentCaller, upstream: Upstream) -> Payment:
    message = pb.GetPaymentRequest(payment_id=paymentId)
    reply = await upstream.call("payment", PaymentStub, "GetPayment", message)
    if reply.status == _NOT_A_PAYMENT:
        raise Problem(404, "no such payment")
    return payment_of(reply)


class WalletEntry(BaseModel):
    id: str
    amount: Amount = Field(description="Negative when credit was taken")
    kind: str = Field(description="credit, debit, payment, refund, void or setUp")
    orderId: str | None
    reason: str | None
    at: str


class Wallet(BaseModel):
    balance: Amount
    currency: str
    entries: list[WalletEntry] = Field(description="The ledger, newest first")


class Credit(Input):
    amount: Annotated[Decimal, Number, Field(gt=0, le=MAX_CREDIT, decimal_places=2)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


def wallet_of(w: pb.WalletView) -> Wallet:
    return Wallet(
        balance=_amount(w.balance),
        currency=w.balance.currency or "USD",
        entries=[
            WalletEntry(
                id=e.id,
                amount=_amount(e.amount),
                kind=e.kind,
                orderId=e.order_id or None,
                reason=e.reason or None,
                at=e.at,
            )
            for e in w.entries
        ],
    )


Entries = Annotated[int, Query(ge=0, le=500, description="How many ledger entries to show")]


@wallets.get("/api/v1/wallet", summary="My wallet: balance and ledger")
async def my_wallet(caller: CurrentCaller, upstream: Upstream, entries: Entries = 50) -> Wallet:
    message = pb.GetWalletRequest(entries=entries)
    return wallet_of(await upstream.call("payment", PaymentStub, "GetWallet", message))


@wallets.post(
    "/api/v1/admin/wallets/{userId}/credit",
    summary="Add store credit to a user's wallet (admin)",
    description="The user must exist. Honours `Idempotency-Key`: one credit per key.",
)
async def credit_wallet(
    userId: Id, body: Credit, caller: AdminCaller, upstream: Upstream, key: IdempotencyKey = None
) -> Wallet:
    user = identity_pb2.GetUserRequest(user_id=userId)
    await upstream.call("identity", IdentityStub, "GetUser", user)  # 404 for no such user
    message = pb.TopUpWalletRequest(
        user_id=userId,
        amount=Money(amount=str(body.amount), currency=body.currency),
        reason=body.reason,
        entries=50,
    )
    return wallet_of(await upstream.call("payment", PaymentStub, "TopUpWallet", message))
