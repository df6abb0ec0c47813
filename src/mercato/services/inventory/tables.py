"""inventory's tables (created by migrations/inventory_0001_initial.py)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
When = sa.DateTime(timezone=True)

# available = stock on hand that is free to sell; reserved = on hand but held for orders.
stock = sa.Table(
    "stock",
    metadata,
    sa.Column("product_id", sa.String(64), primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
    sa.Column("updated_at", When, nullable=False),
)

# One row per order (the primary key makes a second reservation for the same order impossible).
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("items", sa.JSON, nullable=False),  # [[productId, quantity], ...]
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
)

# Settings the handlers need (they get no context): written by the service at start.
config = sa.Table(
    "inventory_config",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
