"""The provider port and its two adapters: the sandbox card provider and the wallet.

A provider authorizes, captures, refunds and voids one charge. Both adapters here act inside
the caller's transaction (``conn``), so a charge and the payment row that records it commit
together: a redelivered event finds the row and charges nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import BindParameter, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.storage.sql import Connection
from mercato.services.payment.domain import REASONS, Outcome
from mercato.services.payment.tables import wallets

_WALLET = update(wallets).where(
    wallets.c.user_id == bindparam("b_user_id"), wallets.c.currency == bindparam("b_currency")
)
_AMOUNT: BindParameter[int] = bindparam("b_amount")
# See Wallet: the check and the debit are one conditional UPDATE.
_DEBIT = _WALLET.where(wallets.c.balance >= _AMOUNT).values(
    balance=wallets.c.balance - _AMOUNT, updated_at=bindparam("b_now")
)
_CREDIT = _WALLET.values(
    balance=wallets.c.balance + _AMOUNT, updated_at=bindparam("b_now")
).returning(wallets.c.balance)
_NEW_WALLET = wallets.insert()


def _params(user_id: str, amount: int, currency: str) -> dict[str, object]:
    return {
        "b_user_id": user_id,
        "b_currency": currency,
        "b_amount": amount,
        "b_now": datetime.now(UTC),
    }


class Declined(Exception):
    """The provider refused; ``str(exc)`` is the reason given to the order."""


@dataclass(frozen=True)
class Charge:
    payment_id: str
    user_id: str
    amount: int  # ten-thousandths
    currency: str
    outcome: Outcome = Outcome.APPROVED  # the sandbox card's behaviour (cards only)


class Provider(Protocol):
    async def authorize(self, conn: Connection, charge: Charge) -> None: ...
    async def capture(self, conn: Connection, charge: Charge) -> None: ...
    async def refund(self, conn: Connection, charge: Charge) -> None: ...
    async def void(self, conn: Connection, charge: Charge) -> None: ...


class SandboxCards:
    """The well-known test cards (docs/design.md): declined and insufficient funds fail the
    authorization; the processing-error card authorizes and then fails the capture (so it is
    left to be voided)."""

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
    the credit back."""

    async def authorize(self, conn: Connection, charge: Charge) -> None:
        params = _params(charge.user_id, charge.amount, charge.currency)
        result = await conn.execute(_DEBIT, params)
        if result.rowcount != 1:
            raise Declined("insufficient wallet credit")

    async def capture(self, conn: Connection, charge: Charge) -> None:
        return None  # the credit was taken at authorization

    async def refund(self, conn: Connection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency)

    async def void(self, conn: Connection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency)


async def credit(conn: Connection, user_id: str, amount: int, currency: str) -> int:
    """Add credit (creating the wallet on first top-up); answers the new balance."""
    params = _params(user_id, amount, currency)
    row = (await conn.execute(_CREDIT, params)).first()
    if row is not None:
        return int(row.balance)
    # A first top-up; a concurrent one hits the primary key and its transaction retries.
    wallet = {
        "user_id": user_id,
        "balance": amount,
        "currency": currency,
        "updated_at": params["b_now"],
    }
    await conn.execute(_NEW_WALLET, wallet)
    return amount


async def set_up_wallets(conn: Connection, user_ids: list[str], amount: int, currency: str) -> None:
    """Each user's wallet holds exactly ``amount`` afterwards: one upsert for them all."""
    now = datetime.now(UTC)
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


PROVIDERS: dict[str, Provider] = {"card": SandboxCards(), "wallet": Wallet()}
