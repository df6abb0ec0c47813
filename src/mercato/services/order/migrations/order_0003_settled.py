"""order: what the participants said of a cancelled order's compensation (its settlement).

Revision ID: order_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "order_0003"
down_revision = "order_0002"
branch_labels = None
depends_on = None

FACTS = ("payment_failed", "payment_cancelled", "reservation_failed", "released")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for name in FACTS:
            batch.add_column(sa.Column(name, sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for name in FACTS:
            batch.drop_column(name)
