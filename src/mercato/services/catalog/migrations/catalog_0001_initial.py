"""catalog: products and the record of one-off seeding.

Revision ID: catalog_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "catalog_0001"
down_revision = None
branch_labels = ("catalog",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("price", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("stock_at", When),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("deleted_at", When),
    )
    op.create_index("ix_products_category", "products", ["category"])
    op.create_table(
        "catalog_seeded",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("done_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_seeded")
    op.drop_index("ix_products_category", "products")
    op.drop_table("products")
