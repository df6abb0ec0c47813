"""recommendation's tables (created by migrations/recommendation_0001_initial.py)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
)

metadata = MetaData()
When = DateTime(timezone=True)
Id = String(200)

# The catalog as its events tell it: what an answer shows, and what may never be shown
# (inactive, deleted). ``changed_at`` is the time of the newest event applied: an older event
# that arrives later only fills what is still unknown (see store.keep_product).
products = Table(
    "products",
    metadata,
    Column("product_id", Id, primary_key=True),
    Column("name", String(200)),
    Column("price", Numeric(18, 4)),
    Column("currency", String(3)),
    Column("category", String(100)),
    Column("active", Boolean),
    Column("deleted", Boolean, nullable=False),
    Column("changed_at", When, nullable=False),
)
Index("ix_products_category", products.c.category)

# The products each viewer (a signed-in user "u:<id>" or a browsing session "s:<id>") has
# viewed, each once, with the last time: what a new view is paired with.
viewed = Table(
    "viewed",
    metadata,
    Column("viewer", String(210), primary_key=True),
    Column("product_id", Id, primary_key=True),
    Column("at", When, nullable=False),
)

# How often two products went together: ``kind`` alsoViewed (viewers who viewed both) or
# boughtTogether (completed orders that held both). Each pair is kept both ways round, so
# a product's partners are one index range.
pairs = Table(
    "pairs",
    metadata,
    Column("product_id", Id, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("other_id", Id, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Views and completed orders per product: the cold-start ranking of a category.
popularity = Table(
    "popularity",
    metadata,
    Column("product_id", Id, primary_key=True),
    Column("views", BigInteger, nullable=False),
    Column("purchases", BigInteger, nullable=False),
)
