"""The provider port and its two adapters: the sandbox card provider and the wallet.

A provider authorizes, captures, refunds and voids one charge. Both adapters here act inside
the caller's transaction (``conn``), so a charge and the payment row that records it commit
together: a redelivered event finds the row and charges nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mercato.services.payment.domain import REASONS, Outcome
from mercato.services.payment.tables import wallets


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
    async def authorize(self, conn: AsyncConnection, charge: Charge) -> None: ...
    async def capture(self, conn: AsyncConnection, charge: Charge) -> None: ...
    async def refund(self, conn: AsyncConnection, charge: Charge) -> None: ...
    async def void(self, conn: AsyncConnection, charge: Charge) -> None: ...


class SandboxCards:
    """DESIGN §6 test cards: declined and insufficient funds fail the authorization; the
    processing-error card authorizes and then fails the capture (so it is left to be voided)."""

    async def authorize(self, conn: AsyncConnection, charge: Charge) -> None:
        if charge.outcome in (Outcome.DECLINED, Outcome.INSUFFICIENT_FUNDS):
            raise Declined(REASONS[charge.outcome])

    async def capture(self, conn: AsyncConnection, charge: Charge) -> None:
        if charge.outcome is Outcome.PROCESSING_ERROR:
            raise Declined(REASONS[charge.outcome])

    async def refund(self, conn: AsyncConnection, charge: Charge) -> None:
        return None

    async def void(self, conn: AsyncConnection, charge: Charge) -> None:
        return None


class Wallet:
    """Store credit. The authorization takes the credit with one conditional update
    (``balance >= amount``), so concurrent payments can never drive a balance negative: the
    database applies them one at a time and the loser matches no row. Refund and void give
    the credit back."""

    async def authorize(self, conn: AsyncConnection, charge: Charge) -> None:
        result = await conn.execute(
            update(wallets)
            .where(
                wallets.c.user_id == charge.user_id,
                wallets.c.currency == charge.currency,
                wallets.c.balance >= charge.amount,
            )
            .values(balance=wallets.c.balance - charge.amount, updated_at=datetime.now(UTC))
        )
        if result.rowcount != 1:
            raise Declined("insufficient wallet credit")

    async def capture(self, conn: AsyncConnection, charge: Charge) -> None:
        return None  # the credit was taken at authorization

    async def refund(self, conn: AsyncConnection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency)

    async def void(self, conn: AsyncConnection, charge: Charge) -> None:
        await credit(conn, charge.user_id, charge.amount, charge.currency)


async def credit(conn: AsyncConnection, user_id: str, amount: int, currency: str) -> int:
    """Add credit (creating the wallet on first top-up); answers the new balance."""
    now = datetime.now(UTC)
    result = await conn.execute(
        update(wallets)
        .where(wallets.c.user_id == user_id, wallets.c.currency == currency)
        .values(balance=wallets.c.balance + amount, updated_at=now)
        .returning(wallets.c.balance)
    )
    row = result.first()
    if row is not None:
        return int(row.balance)
    # A first top-up; a concurrent one hits the primary key and its transaction retries.
    await conn.execute(
        wallets.insert().values(user_id=user_id, balance=amount, currency=currency, updated_at=now)
    )
    return amount


async def set_up_wallets(
    conn: AsyncConnection, user_ids: list[str], amount: int, currency: str
) -> None:
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
