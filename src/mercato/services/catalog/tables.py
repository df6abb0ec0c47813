"""catalog's tables (made by migrations/catalog_0001_initial.py, catalog_0002_search_text.py,
catalog_0003_version.py and catalog_0004_stock_rebuild.py)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
When = sa.DateTime(timezone=True)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("category", sa.String(100), nullable=False),
    sa.Column("price", sa.Numeric(18, 2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    # Displayed availability, from inventory's StockUpdated; stock_at orders those reports.
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("stock_at", When),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    # Deleted products stay as rows so ValidateItems can say "deleted", not "never existed".
    sa.Column("deleted_at", When),
    # domain.search_text(name, description): what a search looks in (catalog_0002).
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
)

# One row per one-off job done (the demo catalog), so a restart does not redo it.
seeded = sa.Table(
    "catalog_seeded",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("done_at", When, nullable=False),
)

# One row: a number every change to a product row moves (triggers, catalog_0003), so a page
# read at one version is the same page while the version stays.
version = sa.Table(
    "catalog_version",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# The displayed stock rebuilt from the event log by one rebuild (its consumer name), before it
# is swapped into products (rebuild.py).
stock_rebuild = sa.Table(
    "displayed_stock_rebuild",
    metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("product_id", sa.String(64), primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("stock_at", When, nullable=False),
)
