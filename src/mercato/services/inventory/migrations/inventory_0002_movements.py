"""inventory: every change of a product's stock, kept (the admin's stock page shows the last).

Revision ID: inventory_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "inventory_0002"
down_revision = "inventory_0001"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stock_movements",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("order_id", sa.String(64)),
        sa.Column("reason", sa.String(500)),
        sa.Column("actor", sa.String(64)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stock_movements_product", "stock_movements", ["product_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_stock_movements_product", "stock_movements")
    op.drop_table("stock_movements")
