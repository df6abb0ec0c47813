"""order: orders, order items, status history.

Revision ID: order_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "order_0001"
down_revision = None
branch_labels = ("order",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)
Id = sa.String(200)
Amount = sa.Numeric(18, 4)
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", Id, primary_key=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_since", When, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_amount", Amount, nullable=False),
        sa.Column("payment_method", sa.Text),
        sa.Column("shipping_address", sa.Text),
        sa.Column("cart_id", Id),
        sa.Column("payment_id", Id),
        sa.Column("paid", sa.Boolean, nullable=False),
        sa.Column("refunded", sa.Boolean, nullable=False),
        sa.Column("reserved", sa.Boolean, nullable=False),
        sa.Column("shipment_id", Id),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("cancelled_from", sa.String(16)),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at"])
    op.create_index("ix_orders_created", "orders", ["created_at"])
    op.create_index("ix_orders_status", "orders", ["status", "status_since"])
    op.create_table(
        "order_items",
        sa.Column("order_id", Id, primary_key=True),
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Amount, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "order_status_history",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("order_id", Id, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_order_status_history_order", "order_status_history", ["order_id", "seq"])


def downgrade() -> None:
    op.drop_table("order_status_history")
    op.drop_table("order_items")
    op.drop_table("orders")
