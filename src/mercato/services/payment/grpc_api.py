"""payment's gRPC API: card tokens, payments (read-only), wallets.

Card numbers and cvcs are checked here and then dropped: only the token row (last4, brand,
expiry, the sandbox outcome) is written, and nothing here logs a request.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from sqlalchemy import Row, func, select

from mercato.api.common.v1.common_pb2 import Money, PageInfo
from mercato.api.payment.v1 import payment_pb2 as pb
from mercato.api.payment.v1 import payment_pb2_grpc
from mercato.platform.auth import Caller, require_caller
from mercato.platform.files import write_once
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.ids import new_id
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.settings import Settings
from mercato.platform.storage.sql import Connection
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.payment.domain import (
    CardError,
    Status,
    card_digest,
    check_card,
    from_units,
    to_units,
)
from mercato.services.payment.provider import (
    Declined,
    Entry,
    EntryKind,
    credit,
    debit,
    set_up_wallets,
)
from mercato.services.payment.tables import cards, payments, wallet_entries, wallets

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE_SIZE = 100
MAX_UNITS = 10**14  # the most one call moves: ten billion in ten-thousandths
MAX_SET_UP = 1000
MAX_USER_ID = 200
MAX_ENTRIES = 500
DIGEST_KEY_FILE = "payment-card-digest.key"
_NEW_CARD = cards.insert()  # built once: executed with a row's values (one per checkout)


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def money(units: int, currency: str) -> Money:
    return Money(amount=str(from_units(units).quantize(Decimal("0.01"))), currency=currency)


# What the provider holds, took and gave back, by the payment's status (one charge per order,
# refunded or voided whole): authorized, captured, refunded.
_HELD = {
    Status.AUTHORIZED: (True, False, False),
    Status.CAPTURED: (True, True, False),
    Status.REFUNDED: (True, True, True),
    Status.VOIDED: (True, False, False),
}


def payment_view(row: Row[Any]) -> pb.PaymentView:
    authorized, captured, refunded = _HELD.get(row.status, (False, False, False))

    def held(yes: bool) -> Money:
        return money(row.amount if yes else 0, row.currency)

    # A refund is the last change of its payment: updated_at is when it happened, reason why.
    refunds = [pb.Refund(amount=held(True), reason=row.reason or "", at=rfc3339(row.updated_at))]
    return pb.PaymentView(
        authorized=held(authorized),
        captured=held(captured),
        refunded=held(refunded),
        refunds=refunds if refunded else [],
        payment_id=row.id,
        order_id=row.order_id,
        user_id=row.user_id or "",
        amount=money(row.amount, row.currency),
        method=row.method or "",
        last4=row.last4 or "",
        status=row.status,
        reason=row.reason or "",
        created_at=rfc3339(row.created_at),
        updated_at=rfc3339(row.updated_at),
    )


async def _subject(context: Context, caller: Caller, user_id: str) -> str:
    """The user a call is about: the caller, or (admin only) the one named."""
    if not user_id or user_id == caller.user_id:
        return caller.user_id
    if not caller.is_admin:
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, "not your data")
    return user_id


def card_digest_key(settings: Settings) -> bytes:
    """``MERCATO_CARD_DIGEST_KEY``, else a key generated once in the data directory (several
    payment replicas on other machines need the same configured key)."""
    if settings.card_digest_key:
        return settings.card_digest_key.encode()
    key, _ = write_once(settings.data_dir / DIGEST_KEY_FILE, lambda: secrets.token_bytes(32))
    return key


class PaymentApi(payment_pb2_grpc.PaymentServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._digest_key = card_digest_key(ctx.settings)

    async def TokenizeCard(self, request: pb.TokenizeCardRequest, context: Context) -> pb.CardToken:
        caller = await require_caller(self.ctx, context)
        now = datetime.now(UTC)
        try:
            card = check_card(
                request.card_number,
                request.expiry,
                request.cvc,
                request.holder,
                now_year=now.year,
                now_month=now.month,
            )
        except CardError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        token = "tok_" + new_id()
        row = {
            "token": token,
            "user_id": caller.user_id,
            "last4": card.last4,
            "brand": card.brand,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "holder": card.holder,
            "outcome": card.outcome,
            "created_at": now,
        }
        await self.ctx.db.execute_alone(_NEW_CARD, row)  # no event: one statement alone
        return pb.CardToken(
            digest=card_digest(self._digest_key, request.card_number, card, request.cvc),
            token=token,
            last4=card.last4,
            brand=card.brand,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Context) -> pb.PaymentView:
        caller = await require_caller(self.ctx, context)
        if request.payment_id:
            where = payments.c.id == request.payment_id
        elif request.order_id:
            where = payments.c.order_id == request.order_id
        else:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "payment_id or order_id")
        async with self.ctx.db.connect() as conn:
            row = (await conn.execute(select(payments).where(where))).first()
        if row is None or not (caller.is_admin or row.user_id == caller.user_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such payment")
        return payment_view(row)

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Context
    ) -> pb.ListPaymentsReply:
        caller = await require_caller(self.ctx, context)
        page = max(request.page.page, 1)
        size = min(max(request.page.page_size, 1) if request.page.page_size else 20, MAX_PAGE_SIZE)
        query = select(payments)
        count = select(func.count()).select_from(payments)
        if request.user_id or not caller.is_admin:
            user_id = await _subject(context, caller, request.user_id)
            query = query.where(payments.c.user_id == user_id)
            count = count.where(payments.c.user_id == user_id)
        if request.order_id:
            query = query.where(payments.c.order_id == request.order_id)
            count = count.where(payments.c.order_id == request.order_id)
        async with self.ctx.db.connect() as conn:
            total = (await conn.execute(count)).scalar_one()
            rows = await conn.execute(
                query.order_by(payments.c.created_at.desc(), payments.c.id)
                .limit(size)
                .offset((page - 1) * size)
            )
            views = [payment_view(r) for r in rows]
        return pb.ListPaymentsReply(
            payments=views, page=PageInfo(page=page, page_size=size, total=total)
        )

    async def GetWallet(self, request: pb.GetWalletRequest, context: Context) -> pb.WalletView:
        caller = await require_caller(self.ctx, context)
        user_id = await _subject(context, caller, request.user_id)
        limit = await _entries(context, request.entries)
        async with self.ctx.db.connect() as conn:
            return await wallet_view(conn, user_id, limit)

    async def TopUpWallet(self, request: pb.TopUpWalletRequest, context: Context) -> pb.WalletView:
        caller = await require_caller(self.ctx, context, role="admin")
        user_id = request.user_id
        units, currency = await _amount(context, user_id, request.amount)
        limit = await _entries(context, request.entries)
        entry = Entry(EntryKind.CREDIT, reason=request.reason.strip() or None)

        async def work(uow: UnitOfWork) -> pb.WalletView:
            held = await uow.conn.execute(
                select(wallets.c.currency).where(wallets.c.user_id == user_id)
            )
            existing = held.scalar_one_or_none()
            if existing is None and request.existing_only:
                raise NoWallet(user_id)
            if existing is not None and existing != currency:
                raise WrongCurrency(f"the wallet holds {existing}")
            await credit(uow.conn, user_id, units, currency, entry)
            return await wallet_view(uow.conn, user_id, limit)

        try:
            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"payment.TopUpWallet:{caller.user_id}",
                request=request,
                work=work,
                decode=pb.WalletView.FromString,
            )
        except WrongCurrency as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except NoWallet:
            await abort(context, grpc.StatusCode.NOT_FOUND, "the user has no wallet")

    async def DebitWallet(self, request: pb.DebitWalletRequest, context: Context) -> pb.WalletView:
        caller = await require_caller(self.ctx, context, role="admin")
        user_id = request.user_id
        units, currency = await _amount(context, user_id, request.amount)

        async def work(uow: UnitOfWork) -> pb.WalletView:
            entry = Entry(EntryKind.DEBIT, reason=request.reason.strip() or None)
            try:
                await debit(uow.conn, user_id, units, currency, entry)
            except Declined:
                held = await uow.conn.execute(
                    select(wallets.c.currency).where(wallets.c.user_id == user_id)
                )
                existing = held.scalar_one_or_none()
                if existing is None:
                    raise NoWallet(user_id) from None
                if existing != currency:
                    raise WrongCurrency(f"the wallet holds {existing}") from None
                raise
            balance = int(
                await uow.conn.scalar(select(wallets.c.balance).where(wallets.c.user_id == user_id))
                or 0
            )
            return pb.WalletView(user_id=user_id, balance=money(balance, currency), exists=True)

        try:
            # A refused debit rolls back with its key, so a retry is judged afresh.
            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"payment.DebitWallet:{caller.user_id}",
                request=request,
                work=work,
                decode=pb.WalletView.FromString,
            )
        except NoWallet:
            await abort(context, grpc.StatusCode.NOT_FOUND, "the user has no wallet")
        except (WrongCurrency, Declined) as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    async def SetUpWallets(
        self, request: pb.SetUpWalletsRequest, context: Context
    ) -> pb.SetUpWalletsReply:
        await require_caller(self.ctx, context, role="admin")
        user_ids = sorted(set(request.user_ids))  # one lock order for concurrent writers
        if not 1 <= len(user_ids) <= MAX_SET_UP or not all(
            0 < len(u) <= MAX_USER_ID for u in user_ids
        ):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"1 to {MAX_SET_UP} user ids of 1 to {MAX_USER_ID} characters",
            )
        units, currency = await _amount(context, user_ids[0], request.balance, allow_zero=True)
        async with self.ctx.transaction() as uow:
            await set_up_wallets(uow.conn, user_ids, units, currency)
        return pb.SetUpWalletsReply(count=len(user_ids))


async def _amount(
    context: Context, user_id: str, amount: Money, allow_zero: bool = False
) -> tuple[int, str]:
    """An amount of a request in ten-thousandths, and its currency (default USD)."""
    currency = amount.currency or "USD"
    try:
        units = to_units(Decimal(amount.amount))
    except (InvalidOperation, ValueError, OverflowError):  # OverflowError: "Infinity"
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "amount must be a decimal")
    if not user_id or not (0 if allow_zero else 1) <= units <= MAX_UNITS or len(currency) != 3:
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "a user_id, a positive amount and a 3-letter currency are required",
        )
    return units, currency


async def _entries(context: Context, entries: int) -> int:
    if not 0 <= entries <= MAX_ENTRIES:
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"entries: 0 to {MAX_ENTRIES}")
    return entries


async def wallet_view(conn: Connection, user_id: str, entries: int) -> pb.WalletView:
    """The user's wallet and its ``entries`` newest ledger entries."""
    row = (await conn.execute(select(wallets).where(wallets.c.user_id == user_id))).first()
    balance, currency = (row.balance, row.currency) if row else (0, "USD")
    view = pb.WalletView(user_id=user_id, balance=money(balance, currency), exists=row is not None)
    if entries and row is not None:
        query = (
            select(wallet_entries)
            .where(wallet_entries.c.user_id == user_id)
            .order_by(wallet_entries.c.at.desc(), wallet_entries.c.id.desc())
            .limit(entries)
        )
        view.entries.extend(
            pb.WalletEntry(
                id=e.id,
                amount=money(e.amount, e.currency),
                kind=e.kind,
                order_id=e.order_id or "",
                payment_id=e.payment_id or "",
                reason=e.reason or "",
                at=rfc3339(e.at),
            )
            for e in await conn.execute(query)
        )
    return view


class WrongCurrency(Exception):
    pass


class NoWallet(LookupError):
    pass
