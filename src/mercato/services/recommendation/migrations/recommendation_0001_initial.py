"""recommendation: products as the catalog's events tell them, views, pairs, popularity.

Revision ID: recommendation_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "recommendation_0001"
down_revision = None
branch_labels = ("recommendation",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)
Id = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("price", sa.Numeric(18, 4)),
        sa.Column("currency", sa.String(3)),
        sa.Column("category", sa.String(100)),
        sa.Column("active", sa.Boolean),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("changed_at", When, nullable=False),
    )
    op.create_index("ix_products_category", "products", ["category"])
    op.create_table(
        "viewed",
        sa.Column("viewer", sa.String(210), primary_key=True),
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("at", When, nullable=False),
    )
    op.create_table(
        "pairs",
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("other_id", Id, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "popularity",
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("views", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("popularity")
    op.drop_table("pairs")
    op.drop_table("viewed")
    op.drop_table("products")
