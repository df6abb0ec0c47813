"""Payment's tables (created by migrations/payment_0001_initial.py).

Amounts are integer ten-thousandths (see domain.to_units). No column ever holds a card
number or a cvc.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()
When = DateTime(timezone=True)

cards = Table(
    "cards",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("brand", String(20), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("outcome", String(30), nullable=False),  # what the sandbox does with this card
    Column("created_at", When, nullable=False),
)

wallets = Table(
    "wallets",
    metadata,
    Column("user_id", String(200), primary_key=True),
    Column("balance", BigInteger, nullable=False),  # never negative: conditional debits
    Column("currency", String(3), nullable=False),
    Column("updated_at", When, nullable=False),
)

# One row per order (unique order_id): the guard against a second capture.
payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(200), nullable=False, unique=True),
    Column("user_id", String(200)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("method", String(10)),
    Column("token", String(64)),
    Column("last4", String(4)),
    Column("status", String(20), nullable=False),
    Column("reason", String(500)),
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)
Index("ix_payments_user", payments.c.user_id)

# The wallets' ledger (migrations/payment_0002_wallet_ledger.py): every change of a balance,
# written in the transaction that makes it, so a wallet's balance is the sum of its entries.
wallet_entries = Table(
    "wallet_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: negative when credit was taken
    Column("currency", String(3), nullable=False),
    Column("kind", String(10), nullable=False),  # provider.EntryKind
    Column("order_id", String(200)),
    Column("payment_id", String(64)),
    Column("reason", String(500)),
    Column("at", When, nullable=False),
)
Index("ix_wallet_entries_user_at", wallet_entries.c.user_id, wallet_entries.c.at)
