"""cart: carts, their items, and the product prices learnt from the catalog's events.

Revision ID: cart_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "cart_0001"
down_revision = None
branch_labels = ("cart",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "carts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("touched_at", When, nullable=False),
        sa.Column("abandoned_at", When),
        sa.Column("order_id", sa.String(64)),
        sa.Column("checked_out_at", When),
    )
    op.create_index(
        "uq_carts_active_user",
        "carts",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_index("ix_carts_idle", "carts", ["status", "touched_at"])
    op.create_table(
        "cart_items",
        sa.Column("cart_id", sa.String(64), primary_key=True),
        sa.Column("product_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price_as_of", When, nullable=False),
        sa.Column("added_at", When, nullable=False),
    )
    op.create_index("ix_cart_items_product", "cart_items", ["product_id"])
    op.create_table(
        "product_prices",
        sa.Column("product_id", sa.String(200), primary_key=True),
        sa.Column("price", sa.String(40)),
        sa.Column("currency", sa.String(3)),
        sa.Column("name", sa.String(200)),
        sa.Column("as_of", When, nullable=False),
        sa.Column("deleted_at", When),
    )


def downgrade() -> None:
    op.drop_table("product_prices")
    op.drop_table("cart_items")
    op.drop_table("carts")
