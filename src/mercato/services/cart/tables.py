"""cart's tables (created by migrations/cart_0001_initial.py).

Prices are decimal strings, never floats: SQLite has no exact decimal type, and the cart only
stores and shows them (arithmetic happens on ``Decimal`` in Python).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    literal_column,
    text,
)

metadata = MetaData()
When = DateTime(timezone=True)

carts = Table(
    "carts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # active | checked_out
    Column("created_at", When, nullable=False),
    Column("touched_at", When, nullable=False),  # the user's last change
    Column("abandoned_at", When),  # CartAbandoned published for this idle spell
    Column("order_id", String(64)),
    Column("checked_out_at", When),
)
# One active cart per user; checked-out carts stay as a record.
Index(
    "uq_carts_active_user",
    carts.c.user_id,
    unique=True,
    postgresql_where=text("status = 'active'"),
    sqlite_where=text("status = 'active'"),
)
Index("ix_carts_idle", carts.c.status, carts.c.touched_at)
# The condition of that index, written as it is: with the status as a bound parameter, SQLite
# plans for the value bound and prepares the statement again at every run (so it can tell the
# index applies), and a PostgreSQL generic plan cannot use the index at all.
ACTIVE = carts.c.status == literal_column("'active'")

cart_items = Table(
    "cart_items",
    metadata,
    Column("cart_id", String(64), primary_key=True),
    Column("product_id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("price_as_of", When, nullable=False),  # when the catalog set this price
    Column("added_at", When, nullable=False),
)
Index("ix_cart_items_product", cart_items.c.product_id)

# What cart has learnt about products from the catalog's events: the latest price, and whether
# the product is gone. It closes the race between AddItem (priced by a gRPC answer) and an
# event that arrived while the line was being written.
product_prices = Table(
    "product_prices",
    metadata,
    Column("product_id", String(200), primary_key=True),
    Column("price", String(40)),
    Column("currency", String(3)),
    Column("name", String(200)),
    Column("as_of", When, nullable=False),
    Column("deleted_at", When),
)
