"""inventory's tables (created by its migrations)."""

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

# Every change of a product's stock (migrations/inventory_0002_movements.py): ``kind`` is one
# of domain.Movement, ``quantity`` the units it moved (for ``set``: what became available).
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
stock_movements = sa.Table(
    "stock_movements",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.String(64)),
    sa.Column("reason", sa.String(500)),
    sa.Column("actor", sa.String(64)),  # the admin's user id
    sa.Column("at", When, nullable=False),
)
sa.Index("ix_stock_movements_product", stock_movements.c.product_id, stock_movements.c.seq)

# Settings the handlers need (they get no context): written by the service at start.
config = sa.Table(
    "inventory_config",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
