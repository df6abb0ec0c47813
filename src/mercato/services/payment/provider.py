"""The provider port and its two adapters: the sandbox card provider and the wallet.

A provider authorizes, captures, refunds and voids one charge. Both adapters here act inside
the caller's transaction (``conn``), so a charge and the payment row that records it commit
together: a redelivered event finds the row and charges nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import BindParameter, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.services.payment.domain import REASONS, Outcome
from mercato.services.payment.tables import wallet_entries, wallets

_WALLET = update(wallets).where(
    wallets.c.user_id == bindparam("b_user_id"), wallets.c.currency == bindparam("b_currency")
)
_AMOUNT: BindParameter[int] = bindparam("b_amount")
# See Wallet: the check and the debit are one conditional UPDATE.
_DEBIT = _WALLET.where(wallets.c.balance >= _AMOUNT).values(
    balance=wallets.c.balance - _AMOUNT, updated_at=bindparam("b_now")
)


def _credit_statement(insert: Any) -> Any:
    """Add to the wallet, or open it with the amount: one upsert, so two first top-ups at once
    both count (the second waits on the key and then adds). A wallet in another currency
    matches nothing and answers no row."""
    new = insert(wallets)
    return new.on_conflict_do_update(
        index_elements=[wallets.c.user_id],
        set_={
            "balance": wallets.c.balance + new.excluded.balance,
            "updated_at": new.excluded.updated_at,
        },
        where=wallets.c.currency == new.excluded.currency,
    ).returning(wallets.c.balance)


_CREDIT = {
    "postgresql": _credit_statement(postgresql.insert),
    "sqlite": _credit_statement(sqlite.insert),
}
_NEW_ENTRY = wallet_entries.insert()


class EntryKind(StrEnum):
    """Why a wallet's balance changed (a ledger entry's kind)."""

    CREDIT = "credit"  # an admin's top-up
    DEBIT = "debit"  # an admin took credit back
    PAYMENT = "payment"  # an order's charge
    REFUND = "refund"  # a captured charge given back
    VOID = "void"  # an authorized charge given back
    SET_UP = "setUp"  # a bulk set-up: the change it made


@dataclass(frozen=True)
class Entry:
    """What a ledger entry says beside its amount."""

    kind: EntryKind
    reason: str | None = None
    order_id: str | None = None
    payment_id: str | None = None


async def record(
    conn: Connection, user_id: str, amount: int, currency: str, entry: Entry, now: datetime
) -> None:
    """A ledger entry, in the transaction that changes the balance by ``amount``."""
    row = {
        "id": new_id(),
        "user_id": user_id,
        "amount": amount,
        "currency": currency,
        "kind": entry.kind.value,
        "order_id": entry.order_id,
        "payment_id": entry.payment_id,
        "reason": entry.reason[:500] if entry.reason else None,
        "at": now,
    }
    await conn.execute(_NEW_ENTRY, row)


def _params(user_id: str, amount: int, currency: str, now: datetime) -> dict[str, object]:
    return {"b_user_id": user_id, "b_currency": currency, "b_amount": amount, "b_now": now}


class Declined(Exception):
    """The provider refused; ``str(exc)`` is the reason given to the order."""


@dataclass(frozen=True)
class Charge:
    payment_id: str
    user_id: str
    amount: int  # ten-thousandths
    currency: str
    outcome: Outcome = Outcome.APPROVED  # the sandbox card's behaviour (cards only)
    order_id: str | None = None
    reason: str | None = None  # why a refund or void gives it back

    def entry(self, kind: EntryKind) -> Entry:
        return Entry(kind, self.reason, self.order_id, self.payment_id or None)


class Provider(Protocol):
    async def authorize(self, conn: Connection, charge: Charge) -> None: ...
    async def capture(self, conn: Connection, charge: Charge) -> None: ...
    async def refund(self, conn: Connection, charge: Charge) -> None: ...
    async def void(self, conn: Connection, charge: Charge) -> None: ...


class SandboxCards:
    """The well-known test cards (docs/design.md): declined and insufficient funds fail the
    authorization; the processing-error card authorizes and then fails the capture (the
    payment voids the hold at once)."""

    async def authorize(self, conn: Connection, charge: Charge) -> None:
        if charge.outcome in (Outcome.DECLINED, Outcome.INSUFFICIENT_FUNDS):
            raise Declined(REASONS[charge.outcome])

    async def capture(self, conn: Connection, charge: Charge) -> None:
        if charge.outcome is Outcome.PROCESSING_ERROR:
            raise Declined(REASONS[charge.outcome])

    async def refund(self, conn: Connection, charge: Charge) -> None:
        return None

    async def void(self, conn: Connection, charge: Charge) -> None:
        return None


class Wallet:
    """Store credit. The authorization takes the credit with one conditional update
    (``balance >= amount``), so concurrent payments can never drive a balance negative: the
    database applies them one at a time and the loser matches no row. Refund and void give
    the credit back. Each change writes its ledger entry in the same transaction."""

    async def authorize(self, conn: Connection, charge: Charge) -> None:
        await debit(conn, charge.user_id, charge.amount, charge.currency, charge.entry(PAYMENT))

    async def capture(self, conn: Connection, charge: Charge) -> None:
        return None  # the credit was taken at authorization

    async def refund(self, conn: Connection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency, charge.entry(REFUND))

    async def void(self, conn: Connection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency, charge.entry(VOID))


PAYMENT, REFUND, VOID = EntryKind.PAYMENT, EntryKind.REFUND, EntryKind.VOID
TOP_UP = Entry(EntryKind.CREDIT)


async def debit(conn: Connection, user_id: str, amount: int, currency: str, entry: Entry) -> None:
    """Take credit if the wallet holds enough (one conditional update), else Declined."""
    now = datetime.now(UTC)
    result = await conn.execute(_DEBIT, _params(user_id, amount, currency, now))
    if result.rowcount != 1:
        raise Declined("insufficient wallet credit")
    await record(conn, user_id, -amount, currency, entry, now)


async def credit(
    conn: Connection, user_id: str, amount: int, currency: str, entry: Entry = TOP_UP
) -> int:
    """Add credit (creating the wallet on first top-up); answers the new balance."""
    now = datetime.now(UTC)
    row = {"user_id": user_id, "balance": amount, "currency": currency, "updated_at": now}
    balance = (await conn.execute(_CREDIT[conn.dialect.name], row)).scalar_one_or_none()
    if balance is None:
        raise Declined(f"the wallet holds another currency than {currency}")
    await record(conn, user_id, amount, currency, entry, now)
    return int(balance)


async def set_up_wallets(conn: Connection, user_ids: list[str], amount: int, currency: str) -> None:
    """Each user's wallet holds exactly ``amount`` afterwards: one upsert for them all, and a
    ledger entry for each balance it changed (read, locked, before)."""
    now = datetime.now(UTC)
    held = select(wallets.c.user_id, wallets.c.balance).where(wallets.c.user_id.in_(user_ids))
    if conn.dialect.name == "postgresql":
        held = held.with_for_update()
    before = {r.user_id: int(r.balance) for r in await conn.execute(held)}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {"user_id": u, "balance": amount, "currency": currency, "updated_at": now} for u in user_ids
    ]
    statement = insert(wallets).values(rows)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[wallets.c.user_id],
            set_={"balance": amount, "currency": currency, "updated_at": now},
        )
    )
    entries = [
        {
            "id": new_id(),
            "user_id": u,
            "amount": amount - before.get(u, 0),
            "currency": currency,
            "kind": EntryKind.SET_UP.value,
            "at": now,
        }
        for u in user_ids
        if amount != before.get(u, 0)
    ]
    if entries:
        await conn.execute(_NEW_ENTRY, entries)


PROVIDERS: dict[str, Provider] = {"card": SandboxCards(), "wallet": Wallet()}
