"""catalog: products.search_text, the lowercased name and description a search looks in.

A search compared ``lower(name)`` and ``lower(description)`` with its words: two function
calls and two LIKEs per row, and SQLite's ``lower()`` lowercases ASCII only (an "É" never
matched an "é"). The text is now lowercased once, in Python, when a product is written.

Revision ID: catalog_0002
"""

import sqlalchemy as sa
from alembic import op

from mercato.services.catalog.domain import search_text

revision = "catalog_0002"
down_revision = "catalog_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("search_text", sa.Text, nullable=False, server_default=""))
    products = sa.table(
        "products",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("search_text", sa.Text),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(products.c.id, products.c.name, products.c.description)).all()
    if rows:
        conn.execute(
            products.update()
            .where(products.c.id == sa.bindparam("b_id"))
            .values(search_text=sa.bindparam("b_text")),
            [{"b_id": r.id, "b_text": search_text(r.name, r.description)} for r in rows],
        )
