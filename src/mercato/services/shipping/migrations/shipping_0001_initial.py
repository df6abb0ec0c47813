"""shipping: shipments and returns, cancelled orders.

Revision ID: shipping_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "shipping_0001"
down_revision = None
branch_labels = ("shipping",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)
Id = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("id", Id, primary_key=True),
        sa.Column("order_id", Id, nullable=False),
        sa.Column("user_id", Id),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("address", sa.Text),
        sa.Column("return_of", Id),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.UniqueConstraint("order_id", "kind", name="uq_shipments_order_kind"),
    )
    op.create_index("ix_shipments_status_created", "shipments", ["status", "created_at"])
    op.create_table(
        "cancelled_orders",
        sa.Column("order_id", Id, primary_key=True),
        sa.Column("previous_status", sa.String(16)),
        sa.Column("cancelled_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cancelled_orders")
    op.drop_table("shipments")
